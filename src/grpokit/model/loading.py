"""Loading the policy model and its tokenizer: Hugging Face id or local directory, LoRA, QLoRA.

`trust_remote_code` stays off unless the config asks for it, weights load from safetensors only,
and the Hugging Face token comes from `HF_TOKEN` (or the config's `token`, masked everywhere).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grpokit.config.schema import GrpokitOptions
from grpokit.errors import ConfigError
from grpokit.model.builtin import resolve_model_path
from grpokit.model.hub_access import check_hub_reachable
from grpokit.model.quantization import (
    WeightMemory,
    keep_4bit_layers_trainable,
    quantized_bits,
    quantized_device_map,
    quiet_bitsandbytes,
    weight_memory,
)

logger = logging.getLogger("grpokit.model")


@dataclass
class ResolvedModel:
    """Where a model comes from, and what its config says, without loading the weights."""

    source: str  # local directory or hub id passed to from_pretrained
    model_type: str
    num_parameters_hint: str
    has_chat_template: bool
    tokenizer: Any  # loaded while resolving; callers that need it reuse it
    weights: WeightMemory | None = None  # the memory the weights take as configured (4-bit, 8-bit or the dtype)


def hf_token(options: GrpokitOptions) -> str | None:
    """The Hugging Face token: `HF_TOKEN` from the environment first, then the config's `token`."""
    return os.environ.get("HF_TOKEN") or options.token or None


def _pretrained_kwargs(options: GrpokitOptions) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"trust_remote_code": options.trust_remote_code}
    if options.revision:
        kwargs["revision"] = options.revision
    token = hf_token(options)
    if token:
        kwargs["token"] = token
    return kwargs


def model_source(options: GrpokitOptions) -> str:
    """The directory or hub id to load. A path (starting with '.', '/' or '~') that does not exist is an error,
    and so is a Hub id that cannot be fetched here (no network and not cached: `model.hub_access`)."""
    source = resolve_model_path(options.model_id)
    local = Path(source).expanduser()
    if local.is_dir():
        return str(local)
    if source.startswith((".", "/", "~")) or local.exists():
        raise ConfigError(
            f"model directory not found: {source}",
            where="model_id",
            fix="pass an existing local directory, a Hugging Face id like 'Qwen/Qwen2.5-0.5B-Instruct', or 'builtin:tiny'",
        )
    check_hub_reachable(source, options.revision)  # no network: one answer in seconds, not a minute of retries
    return source


def _load_error(options: GrpokitOptions, what: str, error: Exception) -> ConfigError:
    return ConfigError(
        f"could not load the {what} for model_id '{options.model_id}': {error}",
        where="model_id",
        fix="check the id or path; models that need custom code also need trust_remote_code: true; "
        "gated models need HF_TOKEN",
    )


def load_tokenizer(options: GrpokitOptions):
    """Load the tokenizer; give it a pad token (its EOS) when it has none, as GRPO batches need padding.

    A `chat_template:` (a file path once the config is loaded) replaces the tokenizer's own template.
    """
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(model_source(options), **_pretrained_kwargs(options))
    except (OSError, ValueError) as error:
        raise _load_error(options, "tokenizer", error) from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if options.chat_template is not None:
        tokenizer.chat_template = Path(options.chat_template).read_text(encoding="utf-8")
    return tokenizer


def resolve_model(options: GrpokitOptions) -> ResolvedModel:
    """Read the model's config (no weights) to check that the model can be found and loaded."""
    from transformers import AutoConfig

    source = model_source(options)
    try:
        model_config = AutoConfig.from_pretrained(source, **_pretrained_kwargs(options))
    except (OSError, ValueError) as error:
        raise _load_error(options, "config", error) from None
    tokenizer = load_tokenizer(options)
    skeleton = _skeleton(model_config, options)
    check_lora_targets(options, skeleton)
    hidden = getattr(model_config, "hidden_size", "?")
    layers = getattr(model_config, "num_hidden_layers", "?")
    return ResolvedModel(
        source=source,
        model_type=model_config.model_type,
        num_parameters_hint=f"{layers} layers, hidden size {hidden}",
        has_chat_template=bool(getattr(tokenizer, "chat_template", None)),
        tokenizer=tokenizer,
        weights=_weight_memory(skeleton, options),
    )


def _weight_memory(skeleton, options: GrpokitOptions) -> WeightMemory:
    import torch

    dtype = torch_dtype(options, has_cuda=torch.cuda.is_available())
    return weight_memory(skeleton, quantized_bits(options), dtype)


def _skeleton(model_config, options: GrpokitOptions):
    """The model's modules without weights (on the meta device): names and shapes, no memory."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(model_config, trust_remote_code=options.trust_remote_code)


def torch_dtype(options: GrpokitOptions, *, has_cuda: bool):
    import torch

    if options.dtype == "auto":
        return torch.bfloat16 if has_cuda and torch.cuda.is_bf16_supported() else torch.float32
    return getattr(torch, options.dtype)


def quantization_config(options: GrpokitOptions, compute_dtype, *, fsdp: bool):
    """QLoRA: 4-bit NF4 with double quantization (or 8-bit). Under FSDP the storage dtype matches the compute dtype."""
    if not (options.load_in_4bit or options.load_in_8bit):
        return None
    key = "load_in_4bit" if options.load_in_4bit else "load_in_8bit"
    quiet_bitsandbytes()
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise ConfigError(
            f"{key}: true needs the bitsandbytes package",
            fix="pip install 'grpokit[gpu]' (or pip install bitsandbytes)",
        ) from None
    from transformers import BitsAndBytesConfig

    if options.load_in_8bit:
        return BitsAndBytesConfig(load_in_8bit=True)

    extra = {"bnb_4bit_quant_storage": compute_dtype} if fsdp else {}
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute_dtype,
        **extra,
    )


def load_model(options: GrpokitOptions, *, gradient_checkpointing: bool, fsdp: bool = False):
    """Load the causal LM with the configured dtype, attention kernel and quantization."""
    import torch
    from transformers import AutoModelForCausalLM

    has_cuda = torch.cuda.is_available()
    dtype = torch_dtype(options, has_cuda=has_cuda)
    kwargs = _pretrained_kwargs(options)
    kwargs["dtype"] = dtype
    kwargs["use_safetensors"] = True
    if options.attn_implementation:
        kwargs["attn_implementation"] = options.attn_implementation
    quantization = quantization_config(options, dtype, fsdp=fsdp)
    if quantization is not None:
        kwargs["quantization_config"] = quantization
        if not fsdp:
            kwargs["device_map"] = quantized_device_map(has_cuda=has_cuda)  # this rank's GPU, or the CPU
    try:
        model = AutoModelForCausalLM.from_pretrained(model_source(options), **kwargs)
    except (OSError, ValueError, ImportError) as error:
        raise _load_error(options, "model", error) from None
    if gradient_checkpointing:
        model.config.use_cache = False
    if quantization is not None and not has_cuda:
        keep_4bit_layers_trainable(model)
    if quantization is not None and not fsdp:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)
    return model


def check_lora_targets(options: GrpokitOptions, model) -> None:
    """Every `lora_target_modules` entry must name modules of the model.

    PEFT fails deep inside the trainer when none matches, and says nothing when only some do (a typo
    then trains fewer adapters than asked).

    Raises:
        ConfigError: naming the entries that match nothing and the model's linear layer names.
    """
    import torch

    if not options.use_lora or options.lora_target_modules in ("all-linear", None):
        return
    names = [name for name, _ in model.named_modules()]
    missing = [t for t in options.lora_target_modules if not any(n == t or n.endswith("." + t) for n in names)]
    if missing:
        linear = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)})
        raise ConfigError(
            f"lora_target_modules names modules this model does not have: {', '.join(missing)}",
            where="lora_target_modules",
            fix=f"use 'all-linear', or names among: {', '.join(linear)}",
        )


def lora_config(options: GrpokitOptions):
    """The LoRA adapter TRL attaches to the model, or None for full fine-tuning."""
    if not options.use_lora:
        quantized = "load_in_4bit" if options.load_in_4bit else "load_in_8bit" if options.load_in_8bit else None
        if quantized:
            raise ConfigError(
                f"{quantized}: true trains adapters only, but use_lora is false",
                fix=f"set use_lora: true for QLoRA, or {quantized}: false for full fine-tuning",
            )
        return None
    from peft import LoraConfig

    return LoraConfig(
        r=options.lora_r,
        lora_alpha=options.lora_alpha,
        lora_dropout=options.lora_dropout,
        target_modules=options.lora_target_modules,  # None: PEFT's default for the architecture
        modules_to_save=options.lora_modules_to_save,
        use_rslora=options.use_rslora,
        use_dora=options.use_dora,
        bias="none",
        task_type="CAUSAL_LM",
    )


def load_model_for_inference(model_ref: str, options: GrpokitOptions):
    """Model (eval mode, on the GPU when there is one) and tokenizer for a saved adapter, a model or an id.

    A directory with `adapter_config.json` is a LoRA adapter: its base model (named in the adapter's
    config) is loaded as `options` say, quantized to 4 or 8 bits too when `load_in_4bit` /
    `load_in_8bit` is set (an adapter trained on a quantized base learned corrections to the quantized
    weights: `options` should be the run's, as `commands.evaluate.options_as_trained` gives them), then
    the adapter on top; the tokenizer comes from the directory when saved there, else from the base.
    Any other model loads unquantized (a merged model is saved in float).

    Raises:
        ConfigError: the model, its base or its tokenizer cannot be found or loaded.
    """
    import torch

    has_cuda = torch.cuda.is_available()
    local = Path(resolve_model_path(model_ref)).expanduser()
    is_adapter = (local / "adapter_config.json").is_file()
    if is_adapter:
        model, tokenizer = _load_adapter(local, options)
    else:
        model_options = options.model_copy(update={"model_id": model_ref, "load_in_4bit": False, "load_in_8bit": False})
        model = load_model(model_options, gradient_checkpointing=False)
        tokenizer = load_tokenizer(model_options)
    if has_cuda and not (is_adapter and quantized_bits(options)):
        model = model.to("cuda")  # a quantized base is placed on its device while loading
    return model.eval(), tokenizer


def _load_adapter(adapter_dir: Path, options: GrpokitOptions):
    """The saved adapter on its base model, loaded with `options`' dtype and quantization."""
    from peft import PeftConfig, PeftModel

    try:
        base_id = PeftConfig.from_pretrained(str(adapter_dir)).base_model_name_or_path
    except (OSError, ValueError) as error:
        raise _load_error(options.model_copy(update={"model_id": str(adapter_dir)}), "adapter", error) from None
    base_options = options.model_copy(update={"model_id": base_id})
    bits = quantized_bits(base_options)
    logger.info("loading the adapter's base model %s%s", base_id, f" in {bits}-bit, as trained" if bits else "")
    model = PeftModel.from_pretrained(load_model(base_options, gradient_checkpointing=False), str(adapter_dir))
    has_tokenizer = (adapter_dir / "tokenizer_config.json").is_file()
    tokenizer = load_tokenizer(options.model_copy(update={"model_id": str(adapter_dir) if has_tokenizer else base_id}))
    return model, tokenizer


CONTEXT_LENGTH_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length")


def model_context_length(options: GrpokitOptions) -> int | None:
    """The longest sequence the model takes, from its config (no weights); None when the config states none."""
    from transformers import AutoConfig

    try:
        model_config = AutoConfig.from_pretrained(model_source(options), **_pretrained_kwargs(options))
    except (OSError, ValueError) as error:
        raise _load_error(options, "config", error) from None
    text_config = getattr(model_config, "text_config", None) or model_config  # multimodal configs nest it
    for key in CONTEXT_LENGTH_KEYS:
        value = getattr(text_config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None
