"""QLoRA on the CPU: bitsandbytes' CPU backend loads, trains, resumes and merges a 4-bit (and 8-bit) model.

The runs train `builtin:tiny` with its linear layers in 4-bit NF4 with double quantization (or
int8), exactly the model the AWS sample trains on a GPU, and check outcomes: the layers really are
quantized while training, the LoRA weights move, a killed run resumes, the merged model loads in
plain transformers and greedily generates what the adapter did on the quantized base, two processes
train one model over gloo. Where bitsandbytes cannot quantize (not installed, no CPU backend, a
failing kernel) the fault is injected and the run falls back with one warning naming it.
"""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from transformers import TrainerCallback

from conftest import TINY_TRAINING
from grpokit.config import bitsandbytes_check, load_config
from grpokit.config.bitsandbytes_check import bitsandbytes_cpu_problem
from grpokit.model.builtin import resolve_model_path
from grpokit.model.loading import load_model, resolve_model
from grpokit.model.quantization import weight_memory
from grpokit.outputs.checkpoints import last_complete_checkpoint
from grpokit.trainer import train

RUN_TIMEOUT_S = 400
# Largest |logit| difference between the merged model and the adapter on the quantized base, over
# 40 addition prompts: measured 6.7e-6 (float32 rounding: x(W+BA) against xW + xBA); the adapter
# itself moves logits by about 4, and merging into the original (unquantized) weights instead would
# differ by the quantization error, about 1.3.
MERGE_LOGIT_TOLERANCE = 1e-4


@pytest.fixture(autouse=True)
def fresh_probe():
    """Each test sees the probe run again (it is cached per process)."""
    bitsandbytes_cpu_problem.cache_clear()
    yield
    bitsandbytes_cpu_problem.cache_clear()


class QuantizedLayers(TrainerCallback):
    """Counts the quantized linear layers and the adapters' dtypes of the model the trainer trains."""

    def __init__(self) -> None:
        self.layers: dict[str, int] = {}
        self.adapter_dtypes: set[torch.dtype] = set()

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        import bitsandbytes as bnb

        for module in model.modules():
            if isinstance(module, (bnb.nn.Linear4bit, bnb.nn.Linear8bitLt)):  # bitsandbytes' layers, not PEFT's wrappers
                name = type(module).__name__
                self.layers[name] = self.layers.get(name, 0) + 1
        self.adapter_dtypes = {p.dtype for n, p in model.named_parameters() if p.requires_grad}


def lora_b_moved(adapter_dir: Path) -> bool:
    weights = load_file(str(adapter_dir / "adapter_model.safetensors"))
    lora_b = [tensor for name, tensor in weights.items() if "lora_B" in name]
    return bool(lora_b) and any(tensor.abs().sum() > 0 for tensor in lora_b)


# ----------------------------------------------------------------------------- the probe and the fallback


def test_bitsandbytes_quantizes_on_this_cpu_so_the_config_keeps_4_and_8_bits(tiny_config):
    assert bitsandbytes_cpu_problem(4) is None and bitsandbytes_cpu_problem(8) is None
    for key in ("load_in_4bit", "load_in_8bit"):
        config = load_config(data={**tiny_config, key: True, "dtype": "bfloat16"}, cuda_available=False)
        assert getattr(config.options, key) is True
        assert not any(key in warning for warning in config.override_lines)
        assert config.options.dtype == "float32", "the compute dtype on a CPU: bfloat16 matmuls are emulated"


def test_without_bitsandbytes_the_run_falls_back_with_one_warning_saying_so(tiny_config, monkeypatch):
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # `import bitsandbytes` raises ImportError
    config = load_config(data={**tiny_config, "load_in_4bit": True}, cuda_available=False)
    assert config.options.load_in_4bit is False
    (warning,) = [w for w in config.override_lines if "load_in_4bit" in w]
    assert "bitsandbytes is not installed" in warning and "pip install 'bitsandbytes>=0.50'" in warning
    assert "loading the model unquantized instead" in warning


def test_a_release_without_a_cpu_backend_is_named(tiny_config, monkeypatch):
    import bitsandbytes

    monkeypatch.setattr(bitsandbytes, "supported_torch_devices", {"cuda"})  # what releases before the CPU backend list
    config = load_config(data={**tiny_config, "load_in_8bit": True}, cuda_available=False)
    assert config.options.load_in_8bit is False
    (warning,) = [w for w in config.override_lines if "load_in_8bit" in w]
    assert f"bitsandbytes {bitsandbytes.__version__} has no CPU backend" in warning


def test_a_kernel_failing_on_this_cpu_is_named_and_the_run_falls_back(tiny_config, monkeypatch):
    import bitsandbytes.functional

    def illegal_instruction(*args, **kwargs):
        raise RuntimeError("the CPU kernel needs AVX2")

    monkeypatch.setattr(bitsandbytes.functional, "quantize_4bit", illegal_instruction)
    config = load_config(data={**tiny_config, "load_in_4bit": True}, cuda_available=False)
    (warning,) = [w for w in config.override_lines if "load_in_4bit" in w]
    assert "a 4-bit bitsandbytes" in warning and "failed on this CPU (RuntimeError: the CPU kernel needs AVX2)" in warning
    assert "set load_in_4bit: false" in warning and config.options.load_in_4bit is False


def test_a_kernel_computing_wrong_values_is_caught_by_the_probe(monkeypatch):
    import bitsandbytes.functional

    real = bitsandbytes.functional.dequantize_4bit
    monkeypatch.setattr(bitsandbytes.functional, "dequantize_4bit", lambda *a, **k: real(*a, **k) * 1.5)
    assert "output differs from its dequantized weight's" in bitsandbytes_cpu_problem(4)


# ----------------------------------------------------------------------------- memory


def quantized_tensor_bytes(model) -> int:
    """Every byte the loaded model's weights hold: parameters, and the quantization state beside them."""
    total, seen = 0, set()
    for parameter in model.parameters():
        if id(parameter) in seen:
            continue
        seen.add(id(parameter))
        total += parameter.numel() * parameter.element_size()
        state = getattr(parameter, "quant_state", None)
        if state is not None:  # 4-bit: 8-bit absmax, and the nested absmax with its offset
            total += state.absmax.numel() * state.absmax.element_size() + state.offset.numel() * 4
            total += state.state2.absmax.numel() * state.state2.absmax.element_size()
        scale = getattr(parameter, "SCB", None)
        if scale is not None:  # 8-bit: a float32 scale per row
            total += scale.numel() * scale.element_size()
    return total


@pytest.mark.parametrize("bits", [None, 4, 8])
def test_the_weight_memory_validate_reports_is_what_the_loaded_model_holds(bits, tiny_config):
    key = {None: {}, 4: {"load_in_4bit": True}, 8: {"load_in_8bit": True}}[bits]
    config = load_config(data={**tiny_config, **key}, cuda_available=False)
    estimate = resolve_model(config.options).weights
    loaded = quantized_tensor_bytes(load_model(config.options, gradient_checkpointing=False))
    assert abs(estimate.loaded_bytes - loaded) <= 64, (estimate, loaded)
    assert estimate.unquantized_bytes == quantized_tensor_bytes(load_model(load_config(data=tiny_config).options, gradient_checkpointing=False))
    if bits == 4:
        assert estimate.line().startswith("the weights take 0.56 MiB in 4-bit NF4 with double quantization, against 3.39 MiB")


def test_the_estimate_needs_no_weights(tiny_config):
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(resolve_model_path("builtin:tiny")))
    memory = weight_memory(skeleton, 4, torch.bfloat16)
    assert memory.dtype == "bfloat16" and memory.unquantized_bytes == 2 * sum(p.numel() for p in skeleton.parameters())


# ----------------------------------------------------------------------------- training


def greedy_logits_and_tokens(model, tokenizer, prompts: list[str]):
    batch = tokenizer(prompts, return_tensors="pt", padding=True, padding_side="left")
    with torch.no_grad():
        logits = model(**batch).logits
        tokens = model.generate(**batch, max_new_tokens=5, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    return logits, tokens


def test_a_4bit_run_trains_quantized_moves_lora_and_merges_into_the_dequantized_base(tiny_config):
    layers = QuantizedLayers()
    config = load_config(
        data={**tiny_config, "load_in_4bit": True, "merge_weights": True, "learning_rate": 1e-2, "max_steps": 3},
        cuda_available=False,
    )
    result = train(config, extra_callbacks=[layers])
    out = Path(tiny_config["output_dir"])
    assert result.global_step == 3
    assert layers.layers == {"Linear4bit": 28}, "every linear layer but the tied output head in 4 bits"
    assert layers.adapter_dtypes == {torch.float32}, "TRL's bfloat16 adapters cast back to float32 on the CPU"
    checkpoint = out / "checkpoints" / "checkpoint-3"
    assert lora_b_moved(checkpoint), "LoRA B starts at zero; training must move it"

    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert not (out / "adapter_config.json").exists()
    merged = AutoModelForCausalLM.from_pretrained(str(out)).eval()
    assert not hasattr(merged.config, "quantization_config"), "the merged model is a plain float checkpoint"
    tokenizer = AutoTokenizer.from_pretrained(str(out))
    adapter = PeftModel.from_pretrained(load_model(config.options, gradient_checkpointing=False), str(checkpoint)).eval()
    prompts = [f"{a}+{b}=" for a, b in zip(range(50, 90), range(3, 43))]
    merged_logits, merged_tokens = greedy_logits_and_tokens(merged, tokenizer, prompts)
    adapter_logits, adapter_tokens = greedy_logits_and_tokens(adapter, tokenizer, prompts)
    with adapter.disable_adapter():
        base_logits, _ = greedy_logits_and_tokens(adapter, tokenizer, prompts)
    assert (adapter_logits - base_logits).abs().max() > 0.1, "the adapter changes the outputs"
    assert (merged_logits - adapter_logits).abs().max() < MERGE_LOGIT_TOLERANCE
    assert torch.equal(merged_tokens, adapter_tokens)


@pytest.mark.slow
def test_an_8bit_run_trains_quantized_and_moves_lora(tiny_config):
    layers = QuantizedLayers()
    result = train(load_config(data={**tiny_config, "load_in_8bit": True}, cuda_available=False), extra_callbacks=[layers])
    assert result.global_step == 2
    assert layers.layers == {"Linear8bitLt": 28} and layers.adapter_dtypes == {torch.float32}
    out = Path(tiny_config["output_dir"])
    assert lora_b_moved(out)
    saved = yaml.safe_load((out / "grpokit_config.yaml").read_text())
    assert saved["load_in_8bit"] is True


def base_linear_layers(model) -> dict[str, int]:
    """bitsandbytes' quantized layers (and plain float linear layers) of a loaded model."""
    import bitsandbytes as bnb

    counts: dict[str, int] = {}
    for module in model.modules():
        if isinstance(module, (bnb.nn.Linear4bit, bnb.nn.Linear8bitLt)):
            counts[type(module).__name__] = counts.get(type(module).__name__, 0) + 1
    return counts


@pytest.mark.parametrize("bits", [4, pytest.param(8, marks=pytest.mark.slow)])
def test_eval_loads_a_qlora_adapters_base_quantized_as_the_run_trained_it(bits, tiny_config, addition_jsonl):
    from peft import PeftModel

    from grpokit.commands.evaluate import EvalOptions, options_as_trained, run_eval
    from grpokit.model.loading import load_model_for_inference

    key = f"load_in_{bits}bit"
    trained = load_config(data={**tiny_config, key: True, "learning_rate": 1e-2}, cuda_available=False)
    train(trained)
    out = Path(tiny_config["output_dir"])
    assert (out / "adapter_config.json").is_file()
    # The config given to `grpokit eval` does not say the run was quantized: the run's saved config does.
    plain = load_config(data={**tiny_config, "test_dataset_path": str(addition_jsonl)}, cuda_available=False)
    as_trained = options_as_trained(str(out), plain.options)
    assert getattr(as_trained, key) is True and getattr(plain.options, key) is False
    model, tokenizer = load_model_for_inference(str(out), as_trained)
    assert base_linear_layers(model) == {"Linear4bit" if bits == 4 else "Linear8bitLt": 28}

    prompts = [f"{a}+{b}=" for a, b in zip(range(50, 70), range(3, 23))]
    eval_logits, eval_tokens = greedy_logits_and_tokens(model, tokenizer, prompts)
    reference = PeftModel.from_pretrained(load_model(trained.options, gradient_checkpointing=False), str(out)).eval()
    reference_logits, reference_tokens = greedy_logits_and_tokens(reference, tokenizer, prompts)
    assert torch.equal(eval_logits, reference_logits) and torch.equal(eval_tokens, reference_tokens)
    unquantized, _ = load_model_for_inference(str(out), plain.options)  # what eval loaded before
    assert base_linear_layers(unquantized) == {}
    unquantized_logits, _ = greedy_logits_and_tokens(unquantized, tokenizer, prompts)
    assert (unquantized_logits - reference_logits).abs().max() > 1e-3, "the quantization error shows in the logits"

    report = run_eval(plain, str(out), EvalOptions(max_rows=4), output_dir=out / "eval")
    assert report.result.num_completions == 4 and report.eval_path.is_file()


# ----------------------------------------------------------------------------- faults and processes


def metric_steps(output_dir: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (output_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]


def write_config(directory: Path, config: dict) -> Path:
    path = directory / "run.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


@pytest.mark.slow
def test_a_killed_4bit_run_resumes_from_its_last_checkpoint(tmp_path, addition_jsonl, monkeypatch):
    from test_faults import grpokit_process, wait_for

    relative = {"train_dataset_path": str(addition_jsonl.relative_to(tmp_path)), "output_dir": "out"}
    config = write_config(tmp_path, {**TINY_TRAINING, **relative, "load_in_4bit": True, "max_steps": 100_000, "save_steps": 1})
    first = grpokit_process("train", str(config), cwd=tmp_path)
    checkpoints = tmp_path / "out" / "checkpoints"
    wait_for(lambda: last_complete_checkpoint(checkpoints) is not None, process=first, what="a checkpoint", timeout=RUN_TIMEOUT_S)
    first.kill()  # SIGKILL mid-run: no handler runs, no checkpoint for the step in progress
    first.communicate(timeout=RUN_TIMEOUT_S)
    assert first.returncode == -signal.SIGKILL
    resumed_from = last_complete_checkpoint(checkpoints)
    step = int(resumed_from.name.split("-")[1])

    monkeypatch.chdir(tmp_path)
    layers = QuantizedLayers()
    result = train(load_config(config, [f"max_steps={step + 1}"]), extra_callbacks=[layers])
    assert result.resumed_from == resumed_from.relative_to(tmp_path) and result.global_step == step + 1
    assert layers.layers == {"Linear4bit": 28}, "the resumed run is 4-bit too"
    steps = metric_steps(tmp_path / "out")
    assert steps[-1] == step + 1 and steps.count(step + 1) == 1
    assert lora_b_moved(tmp_path / "out")


@pytest.mark.slow
def test_nproc_2_trains_one_4bit_model_over_gloo(tmp_path, tiny_config):
    from test_distributed import RANK_REWARD, check_two_rank_run, run_command

    (tmp_path / "rank_reward.py").write_text(RANK_REWARD, encoding="utf-8")
    (tmp_path / "rank_scores").mkdir()
    config = write_config(tmp_path, {
        **tiny_config, "load_in_4bit": True,
        "rewards": [{"name": "./rank_reward.py:digits_plus_rank", "log_dir": str(tmp_path / "rank_scores")}],
    })  # fmt: skip
    result = run_command([sys.executable, "-m", "grpokit", "train", str(config), "--nproc", "2"], tmp_path)
    check_two_rank_run(config, result)
    assert "cannot quantize" not in result.stderr, "no fallback warning on either rank"
    assert yaml.safe_load((Path(tiny_config["output_dir"]) / "grpokit_config.yaml").read_text())["load_in_4bit"] is True


def test_the_probe_runs_once_per_process(monkeypatch):
    calls = []
    monkeypatch.setattr(bitsandbytes_check, "_probe_4bit", lambda: calls.append(1))
    assert bitsandbytes_cpu_problem(4) is None and bitsandbytes_cpu_problem(4) is None
    assert calls == [1]
