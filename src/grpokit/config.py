"""The one YAML config: grpokit's own options, the AWS sample's flat keys, and TRL's fields.

A config file is a flat YAML mapping, as in the AWS GRPO sample's `args.yaml`. Three kinds of key
live side by side:

- grpokit's own options (`GrpokitOptions` below), which include the sample's keys (`model_id`,
  `lora_r`, `train_dataset_path`, `mlflow_uri`, ...) and structured sections (`dataset:`, `rewards:`);
- any field of TRL's `GRPOConfig` (which includes transformers' `TrainingArguments`): these pass
  through unchanged, are type-checked against TRL's own annotations, and are finally validated by
  constructing `trl.GRPOConfig` itself. grpokit never copies TRL's field list.

Precedence: defaults < YAML file < `--set KEY=VALUE` overrides.
"""

from __future__ import annotations

import dataclasses
import datetime
import difflib
import functools
import logging
import os
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PydanticSchemaGenerationError,
    TypeAdapter,
    ValidationError,
    field_validator,
)

from grpokit.data import DatasetOptions
from grpokit.distributed import apply_distributed, distributed_trl_args, log_on_main_process
from grpokit.errors import ConfigError
from grpokit.rewards import RewardSpec

logger = logging.getLogger("grpokit.config")

# A key is a secret when its last word is one of these: token, hub_token, wandb_token, api_key, ...
SECRET_KEY_LAST_WORDS = (
    "token", "secret", "password", "key", "apikey", "credentials", "authorization", "auth", "cookie",
)  # fmt: skip
# TRL fields that are secrets: kept out of GRPOConfig, which transformers pickles into every checkpoint.
SECRET_TRL_FIELDS = ("hub_token",)
URL_PASSWORD = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://[^/@:\s]+):[^/@\s]+@")
MASK = "***"

# TRL defaults that grpokit changes, each for a reason a user of a training tool would expect.
GRPOKIT_TRL_DEFAULTS: dict[str, Any] = {
    # One metrics.jsonl line and one progress update per optimizer step.
    "logging_steps": 1,
    # Periodic checkpoints so a crash or a spot interruption loses little work; the last two are kept.
    "save_steps": 50,
    "save_total_limit": 2,
}

# Keys that only make sense with CUDA, and what grpokit uses instead on a CPU-only machine.
CUDA_ONLY_TRL_FLAGS = {"bf16": "float32 training", "fp16": "float32 training", "use_vllm": "transformers generate()"}


class GrpokitOptions(BaseModel):
    """grpokit's own options. Every other top-level key must be a field of TRL's GRPOConfig."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # Model
    model_id: str = Field(description="Hugging Face model id, local directory, or a built-in model like 'builtin:tiny'.")
    trust_remote_code: bool = Field(False, description="Run model code shipped with the checkpoint. Off unless you trust it.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Weights dtype. 'auto': bfloat16 on a GPU that supports it, else float32."
    )
    attn_implementation: str | None = Field(
        None, description="Attention kernel: 'eager', 'sdpa' or 'flash_attention_2' (GPU only). None: transformers picks."
    )
    revision: str | None = Field(None, description="Model revision (branch, tag or commit) on the Hugging Face Hub.")
    # LoRA / QLoRA
    use_lora: bool = Field(True, description="Train LoRA adapters (true) or all weights (false).")
    lora_r: int = Field(8, gt=0, description="LoRA rank.")
    lora_alpha: int = Field(16, gt=0, description="LoRA scaling alpha.")
    lora_dropout: float = Field(0.05, ge=0.0, lt=1.0, description="Dropout on LoRA layers.")
    lora_target_modules: list[str] | Literal["all-linear"] = Field(
        "all-linear", description="Modules that get adapters: 'all-linear' or a list of module names."
    )
    load_in_4bit: bool = Field(False, description="QLoRA: load the base model in 4-bit NF4 with double quantization (CUDA only).")
    merge_weights: bool = Field(False, description="Save a merged model instead of the LoRA adapter.")
    # Several processes (see docs/distributed.md; the process count comes from the launcher)
    distributed: str | None = Field(
        None,
        description="Sharding preset: ddp, fsdp, fsdp2, deepspeed_zero2, deepspeed_zero3, or the path of your own "
        "accelerate, FSDP or DeepSpeed config. None: plain data parallel when launched on several processes.",
    )
    # Data
    train_dataset_path: str = Field(description="Training data: JSON, JSONL, CSV, Parquet, a dataset.json directory or save_to_disk dir.")
    test_dataset_path: str | None = Field(None, description="Optional evaluation data, same formats.")
    dataset: DatasetOptions = Field(default_factory=DatasetOptions, description="How rows become prompts.")
    # Rewards
    rewards: list[RewardSpec] | None = Field(
        None, description="Reward functions with weights and parameters. None: rouge_l, length and format."
    )
    reward_model_name_or_path: str | None = Field(
        None,
        description="AWS sample key: also score with this sequence-classification reward model (local dir or "
        "Hugging Face id), as a `reward_model` reward of weight 1.0 added to the rewards.",
    )
    # Outputs and resuming
    output_dir: str = Field("outputs/grpokit", description="Where the final model, metrics.jsonl and the report go.")
    checkpoint_dir: str | None = Field(None, description="Checkpoints. None: <output_dir>/checkpoints.")
    resume: str = Field("auto", description="'auto': resume from the last complete checkpoint; 'never'; or a checkpoint path.")
    # Tracking (AWS sample keys)
    mlflow_uri: str | None = Field(None, description="MLflow tracking URI (http(s)://, file:, sqlite:, or a SageMaker ARN).")
    mlflow_experiment_name: str | None = Field(None, description="MLflow experiment; tracking is on when this and mlflow_uri are set.")
    wandb_project: str | None = Field(None, description="Weights & Biases project; W&B is on when set.")
    wandb_token: str | None = Field(None, description="W&B API key. Prefer the WANDB_API_KEY environment variable.")
    token: str | None = Field(None, description="Hugging Face token. Prefer the HF_TOKEN environment variable.")
    # Launchers
    sagemaker: dict[str, Any] | None = Field(
        None, description="Settings for `grpokit launch sagemaker` (role, instance_type, ...); see docs/sagemaker.md."
    )
    # Tracking (grpokit's own keys; see docs/tracking.md)
    mlflow_run_name: str | None = Field(
        None, description="MLflow run name. None: TRL's run_name if set, else '<model>-<YYYYmmdd-HHMMSS>'."
    )
    mlflow_register_model: str | None = Field(
        None, description="Register the final model in the MLflow model registry under this name (a new version per run)."
    )
    wandb_mode: Literal["online", "offline"] = Field(
        "online", description="W&B mode: 'online' streams to the server; 'offline' writes run files under output_dir/wandb."
    )
    system_metrics_interval: float = Field(
        30.0, ge=0, description="Seconds between CPU, RAM and per-GPU samples sent to every tracker. 0: off."
    )
    log_completions_every: int = Field(
        10, ge=0, description="Every N steps, log a table of recent prompts, completions and rewards to each tracker. 0: off."
    )

    @field_validator("resume")
    @classmethod
    def _resume_is_a_mode_or_a_path(cls, value: str) -> str:
        looks_like_mode = difflib.get_close_matches(value, ["auto", "never"], n=1, cutoff=0.6)
        if value not in ("auto", "never") and looks_like_mode and not Path(value).exists():
            raise ValueError(f"did you mean '{looks_like_mode[0]}'? resume is 'auto', 'never' or a checkpoint path")
        return value

    @property
    def resolved_checkpoint_dir(self) -> str:
        return self.checkpoint_dir or str(Path(self.output_dir) / "checkpoints")


@dataclass
class RunConfig:
    """A loaded, validated config: grpokit's options plus the TRL fields to pass through."""

    options: GrpokitOptions
    trl_args: dict[str, Any]
    source: str
    base_dir: Path
    fallback_warnings: list[str] = field(default_factory=list)

    def to_grpo_config(self):
        """Build TRL's `GRPOConfig` (checkpoints go to `checkpoint_dir`, as in the AWS sample)."""
        # The `distributed:` preset's fields (fsdp, fsdp_config, deepspeed, ...) first: keys in the config win.
        trl_args = {**distributed_trl_args(self.options.distributed, self.base_dir, self.source), **self.trl_args}
        trl_args = {key: value for key, value in trl_args.items() if key not in SECRET_TRL_FIELDS}
        return build_grpo_config(trl_args, output_dir=self.options.resolved_checkpoint_dir, source=self.source)

    def summary(self) -> str:
        """One line for the log: the options that differ from the defaults, secrets masked."""
        explicit = self.options.model_dump(mode="json", exclude_defaults=True)
        changed = {**explicit, **{k: v for k, v in self.trl_args.items() if GRPOKIT_TRL_DEFAULTS.get(k, object()) != v}}
        changed.pop("rewards", None)
        changed.pop("dataset", None)
        return ", ".join(f"{key}={value}" for key, value in mask_secrets(changed).items())

    def to_yaml_dict(self) -> dict[str, Any]:
        """The resolved config as written to `grpokit_config.yaml`, secrets masked."""
        resolved = self.options.model_dump(mode="json", exclude_none=False)
        resolved.update(self.trl_args)
        return mask_secrets(resolved)


# ----------------------------------------------------------------------------- TRL fields


@functools.cache
def trl_field_types() -> dict[str, Any]:
    """Every `GRPOConfig` field name with its type annotation, read from TRL itself."""
    from trl import GRPOConfig

    hints = typing.get_type_hints(GRPOConfig)
    return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(GRPOConfig) if f.init}


@functools.cache
def _type_adapter(annotation: Any) -> TypeAdapter | None:
    try:
        return TypeAdapter(annotation)
    except (PydanticSchemaGenerationError, TypeError):  # pydantic cannot model it; TRL's own class still checks
        return None


def _check_trl_value(key: str, value: Any, source: str) -> Any:
    annotation = trl_field_types()[key]
    adapter = _type_adapter(annotation)
    if adapter is None:
        return value
    try:
        # Lax validation also reads YAML 1.1 strings such as '3e-5' as the number they mean.
        return adapter.validate_python(value)
    except ValidationError:
        raise ConfigError(
            f"'{key}' has the wrong type: got {value!r} ({type(value).__name__}), expected {_type_name(annotation)}",
            where=source,
            fix=f"set {key} to a value of type {_type_name(annotation)}",
        ) from None


def _type_name(annotation: Any) -> str:
    text = str(annotation).replace("typing.", "")
    return text.removeprefix("<class '").removesuffix("'>")


def build_grpo_config(trl_args: dict[str, Any], *, output_dir: str, source: str):
    """Construct `trl.GRPOConfig`, turning its validation errors into a `ConfigError`."""
    from trl import GRPOConfig

    try:
        return GRPOConfig(output_dir=output_dir, **trl_args)
    except (ValueError, TypeError) as error:
        raise ConfigError(
            f"TRL rejected the training options: {error}",
            where=source,
            fix="change the options named above (they are fields of trl.GRPOConfig)",
        ) from None


# ----------------------------------------------------------------------------- loading


def own_keys() -> set[str]:
    return set(GrpokitOptions.model_fields)


def read_yaml_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}", fix="pass the path of an existing YAML file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ConfigError(f"config file is not valid YAML: {error}", where=str(path)) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file must be a YAML mapping of key: value, got a {type(data).__name__}", where=str(path)
        )
    return data


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse one `--set KEY=VALUE`; the value is read as YAML (numbers, booleans, lists)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set expects KEY=VALUE, got {text!r}", fix="for example --set learning_rate=1e-5")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    if isinstance(value, datetime.date):  # no config value is a date: --set run_name=2024-01-01 means the text
        value = raw.strip()
    return key.strip().split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    merged = dict(data)
    for text in overrides:
        path, value = parse_override(text)
        node = merged
        for part in path[:-1]:
            child = node.get(part)
            node[part] = dict(child) if isinstance(child, dict) else {}
            node = node[part]
        node[path[-1]] = value
    return merged


def closest_key(key: str, candidates: set[str]) -> str | None:
    matches = difflib.get_close_matches(key, sorted(candidates), n=1, cutoff=0.6)
    return matches[0] if matches else None


def _unknown_key_error(key: str, candidates: set[str], source: str, prefix: str = "") -> ConfigError:
    suggestion = closest_key(key, candidates)
    fix = f"did you mean '{prefix}{suggestion}'?" if suggestion else "remove it; `grpokit keys --trl` lists every valid key"
    return ConfigError(f"unknown config key '{prefix}{key}'", where=source, fix=fix)


def _validation_error_to_config_error(error: ValidationError, source: str) -> ConfigError:
    first = error.errors()[0]
    location = ".".join(str(part) for part in first["loc"])
    if first["type"] == "extra_forbidden":
        *parents, key = [str(part) for part in first["loc"]]
        model: Any = GrpokitOptions
        for parent in parents:
            annotation = model.model_fields[parent].annotation if parent in getattr(model, "model_fields", {}) else None
            model = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
            if model is None:
                break
        candidates = set(model.model_fields) if model is not None else set()
        prefix = ".".join(parents) + "." if parents else ""
        return _unknown_key_error(key, candidates, source, prefix)
    if first["type"] == "missing":
        return ConfigError(f"required config key '{location}' is missing", where=source, fix=f"add '{location}: ...' to the config")
    return ConfigError(
        f"'{location}' is invalid: {first['msg']} (got {first.get('input')!r})",
        where=source,
        fix=f"change '{location}'",
    )


def split_keys(data: dict[str, Any], source: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split a flat mapping into grpokit's options and TRL's fields; unknown keys are an error."""
    ours, theirs = {}, {}
    trl_fields = trl_field_types()
    for key, value in data.items():
        key = str(key)
        if key in own_keys():
            ours[key] = value
        elif key in trl_fields:
            theirs[key] = _check_trl_value(key, value, source)
        else:
            raise _unknown_key_error(key, own_keys() | set(trl_fields), source)
    return ours, theirs


def load_config(
    path: str | Path | None = None,
    overrides: list[str] | None = None,
    *,
    data: dict[str, Any] | None = None,
    cuda_available: bool | None = None,
    world_size: int | None = None,
) -> RunConfig:
    """Load and validate a config: defaults < YAML file (`path` or `data`) < `overrides`.

    `world_size` (default: `WORLD_SIZE` from the environment) lets a launcher check a config for the
    job it is about to start; TRL's own validation then waits for the job, since TRL measures the
    world of the process it runs in.

    Raises `ConfigError` naming the key, the file and a fix for unknown keys, wrong types, missing
    required keys, impossible batch arithmetic and options TRL rejects.
    """
    source = str(path) if path is not None else "<config>"
    raw = read_yaml_file(path) if path is not None else dict(data or {})
    raw = apply_overrides(raw, overrides or [])
    if overrides:
        source += " (with --set overrides)"
    ours, theirs = split_keys(raw, source)
    try:
        options = GrpokitOptions(**ours)
    except ValidationError as error:
        raise _validation_error_to_config_error(error, source) from None
    trl_args = {**GRPOKIT_TRL_DEFAULTS, **theirs}
    has_cuda = _cuda_available() if cuda_available is None else cuda_available
    fallback_warnings = apply_cpu_fallbacks(options, trl_args, theirs, has_cuda=has_cuda)
    config = RunConfig(
        options=options,
        trl_args=trl_args,
        source=source,
        base_dir=Path(path).resolve().parent if path is not None else Path.cwd(),
        fallback_warnings=fallback_warnings,
    )
    processes = world_size_from_env() if world_size is None else world_size
    config.fallback_warnings += apply_distributed(config, has_cuda=has_cuda, world_size=processes)
    check_batch_arithmetic(trl_args, world_size=processes, source=source)
    if world_size is None:
        config.to_grpo_config()  # TRL's own validation, at load time
    return config


# ----------------------------------------------------------------------------- CPU fallbacks


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def apply_cpu_fallbacks(
    options: GrpokitOptions, trl_args: dict[str, Any], explicit_trl: dict[str, Any], *, has_cuda: bool
) -> list[str]:
    """Turn off options that need CUDA on a CPU-only machine; one warning line per option turned off."""
    if has_cuda:
        return []
    warnings: list[str] = []
    for flag, instead in CUDA_ONLY_TRL_FLAGS.items():
        if explicit_trl.get(flag):
            warnings.append(f"{flag}: true needs a CUDA GPU and none was found; using {instead} instead")
        trl_args[flag] = False
    trl_args.setdefault("dataloader_pin_memory", False)  # pinned memory only helps host-to-GPU copies
    if options.attn_implementation == "flash_attention_2":
        warnings.append("attn_implementation: flash_attention_2 needs a CUDA GPU; using 'sdpa' instead")
        options.attn_implementation = "sdpa"
    if options.load_in_4bit:
        warnings.append("load_in_4bit: true (QLoRA) needs a CUDA GPU; loading the model unquantized in float32 instead")
        options.load_in_4bit = False
    if options.dtype in ("bfloat16", "float16"):
        warnings.append(f"dtype: {options.dtype} on a CPU is slow or unsupported for training; using float32 instead")
        options.dtype = "float32"
    log_on_main_process(logger, warnings)
    return warnings



# ----------------------------------------------------------------------------- batch arithmetic


def world_size_from_env() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def check_batch_arithmetic(trl_args: dict[str, Any], *, world_size: int, source: str) -> None:
    """The generation batch must split into whole groups of `num_generations` completions."""
    fields = trl_field_types()
    defaults = _trl_defaults()
    value = {name: trl_args.get(name, defaults.get(name)) for name in fields}
    num_generations = value["num_generations"]
    if not num_generations:
        return
    if num_generations < 2:
        raise ConfigError(
            f"num_generations={num_generations} leaves no group to compare: GRPO needs at least 2 completions per prompt",
            where=source,
            fix="set num_generations to 2 or more",
        )
    per_device = value["per_device_train_batch_size"]
    if value["generation_batch_size"]:
        generation_batch = value["generation_batch_size"]
        how = f"generation_batch_size = {generation_batch}"
    else:
        steps = value["steps_per_generation"] or value["gradient_accumulation_steps"]
        generation_batch = per_device * steps * world_size
        how = (
            f"per_device_train_batch_size ({per_device}) x steps_per_generation"
            f"{'' if value['steps_per_generation'] else ' (= gradient_accumulation_steps)'} ({steps})"
            f" x processes ({world_size}) = {generation_batch}"
        )
    if generation_batch % num_generations:
        divisors = [d for d in range(2, generation_batch + 1) if generation_batch % d == 0]
        raise ConfigError(
            f"num_generations={num_generations} must divide the generation batch: {how}",
            where=source,
            fix=(
                f"use num_generations in {divisors}" if divisors else "increase per_device_train_batch_size"
            )
            + f", or make the batch a multiple of {num_generations}",
        )


@functools.cache
def _trl_defaults() -> dict[str, Any]:
    from trl import GRPOConfig

    return {f.name: f.default for f in dataclasses.fields(GRPOConfig) if f.default is not dataclasses.MISSING}


# ----------------------------------------------------------------------------- secrets


def is_secret_key(key: str) -> bool:
    return key.lower().replace("-", "_").rsplit("_", 1)[-1] in SECRET_KEY_LAST_WORDS


def mask_secrets(value: Any, key: str = "") -> Any:
    """Replace the value of every key that names a secret (any token, key, password) with `***`."""
    if isinstance(value, dict):
        return {k: mask_secrets(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_secrets(item, key) for item in value]
    if key and is_secret_key(key) and value not in (None, "", False) and not isinstance(value, (int, float)):
        return MASK
    if isinstance(value, str):
        return URL_PASSWORD.sub(rf"\1:{MASK}@", value)  # https://user:password@host -> https://user:***@host
    return value


def save_resolved_config(config: RunConfig, directory: str | Path) -> Path:
    """Write `grpokit_config.yaml` (secrets masked) into `directory`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / "grpokit_config.yaml"
    tmp = target.with_suffix(".yaml.tmp")
    tmp.write_text(yaml.safe_dump(config.to_yaml_dict(), sort_keys=False, allow_unicode=True), encoding="utf-8")
    os.replace(tmp, target)
    return target


# ----------------------------------------------------------------------------- reference


def _describe_default(info) -> str:
    if info.is_required():
        return "required"
    if info.default_factory is not None:
        value = info.default_factory()
        return "see below" if isinstance(value, BaseModel) else repr(value)
    return repr(info.default)


def options_reference() -> list[tuple[str, str, str, str]]:
    """(key, type, default, description) for every grpokit option, nested sections as dotted keys."""
    rows = []

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, info in model.model_fields.items():
            annotation = info.annotation
            rows.append((prefix + name, _type_name(annotation), _describe_default(info), info.description or ""))
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                walk(annotation, f"{prefix}{name}.")

    walk(GrpokitOptions, "")
    return rows


def trl_reference() -> list[tuple[str, str, str]]:
    """(key, type, default) for every TRL GRPOConfig field, with grpokit's changed defaults."""
    defaults = {**_trl_defaults(), **GRPOKIT_TRL_DEFAULTS}
    return [(name, _type_name(kind), repr(defaults.get(name, "required"))) for name, kind in sorted(trl_field_types().items())]


def config_reference_markdown() -> str:
    """The generated part of docs/config.md: grpokit's keys and the TRL defaults grpokit changes."""
    lines = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for key, kind, default, description in options_reference():
        lines.append(f"| `{key}` | `{kind}` | `{default}` | {description} |".replace("`see below`", "see below"))
    lines += ["", "TRL defaults that grpokit changes (set the key to override):", ""]
    lines += ["| key | grpokit default | TRL default |", "|---|---|---|"]
    trl_defaults = _trl_defaults()
    for key, value in GRPOKIT_TRL_DEFAULTS.items():
        lines.append(f"| `{key}` | `{value!r}` | `{trl_defaults.get(key)!r}` |")
    return "\n".join(lines) + "\n"
