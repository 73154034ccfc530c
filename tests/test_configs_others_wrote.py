"""Configs other people wrote (issue 20): TRL's own GRPOConfig keyword sets and its CLI docs' configs.

The configs are written here from two sources, read with the search tools:

- the `GRPOConfig(...)` keyword sets of TRL's `tests/test_grpo_trainer.py` (each case names its test);
  TRL's tiny Hub model becomes `builtin:tiny`, its Hub datasets a small local file, its tiny reward
  model the `tiny_reward_model` fixture (or grpokit's `length` reward);
- the `trl grpo` YAMLs of TRL's `docs/source/clis.md` (`model_name_or_path`, `dataset_name`, `reward_funcs`,
  `num_processes`, `accelerate_config`, `datasets:` mixtures), with a local folder for the Hub dataset and
  the small batch of TRL's own tests.

Each one either trains or is refused with one error, and `grpokit validate` and `grpokit train` always
give the same outcome and the same message: the refusals are checked on every run of the suite (both
commands stop at load). Of the configs that train, those where grpokit itself acts (a CPU fallback, a
mapped or older field, evaluation, rewards and their weights, a data source, the launch: `FULL_RUNS`)
are trained 2 steps by `grpokit validate` then `grpokit train` (`slow`); the keyword sets grpokit only
passes through to TRL's `GRPOConfig` are trained one step each by `validate`'s trial step (TRL's
GRPOTrainer with those settings on `builtin:tiny`; `slow`), which keeps the suite's CPU time to a few
minutes. All run in this one process, on one shared dataset.
"""

from __future__ import annotations

import html
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import write_jsonl

LENGTH = [{"name": "length", "target_length": 3}]
# The small batch TRL's own tests train with (learning_rate 0.1: "gradients are tiny").
TRL_TEST_BATCH = {"learning_rate": 0.1, "per_device_train_batch_size": 3, "num_generations": 3, "max_completion_length": 8}
GRPOKIT = {"model_id": "builtin:tiny", "train_dataset_path": "@plain", "rewards": LENGTH, **TRL_TEST_BATCH}
TRL_CLI = {"model_name_or_path": "builtin:tiny", "dataset_name": "@chat", "reward_funcs": ["accuracy_reward"], **TRL_TEST_BATCH}


@dataclass(frozen=True)
class Case:
    """A config from `source`, and what grpokit does with it: trains (None) or stops on the `refused` message."""

    id: str
    source: str
    config: dict[str, Any]
    refused: str | None = None
    overrides: tuple[str, ...] = ()  # keys the run must say it does not use as written
    missing: tuple[str, ...] = ()  # modules made unimportable for the case (a package the machine lacks)
    cuda: bool = False  # the case runs as on a CUDA machine (only to reach a package check)
    extra: dict[str, Any] = field(default_factory=dict)


T = "TRL tests/test_grpo_trainer.py::"
D = "TRL docs/source/clis.md: "
TRAINS = [
    Case("train", T + "test_train", {**GRPOKIT, "rewards": None, "reward_model_name_or_path": "@reward_model"}),
    Case("loss_dr_grpo", T + "test_train_loss_types", {**GRPOKIT, "max_completion_length": 32, "gradient_accumulation_steps": 2, "loss_type": "dr_grpo"}),
    Case("loss_sapo", T + "test_train_loss_types", {**GRPOKIT, "max_completion_length": 32, "gradient_accumulation_steps": 2, "loss_type": "sapo"}),
    Case("loss_luspo", T + "test_train_loss_types", {**GRPOKIT, "max_completion_length": 32, "gradient_accumulation_steps": 2, "loss_type": "luspo",
                                                     "importance_sampling_level": "sequence"}),
    Case("with_eval", T + "test_train_with_eval", {**GRPOKIT, "learning_rate": 1e-6, "test_dataset_path": "@plain", "per_device_eval_batch_size": 3,
                                                   "eval_strategy": "steps", "eval_steps": 2}),
    Case("eval_on_start", T + "test_train_eval_on_start", {**GRPOKIT, "test_dataset_path": "@plain", "per_device_eval_batch_size": 3,
                                                           "loss_type": "grpo", "eval_strategy": "steps", "eval_steps": 2, "eval_on_start": True}),
    Case("num_generations_eval", T + "test_train_with_num_generations_eval", {**GRPOKIT, "test_dataset_path": "@plain", "per_device_eval_batch_size": 3,
                                                                              "num_generations_eval": 1, "eval_strategy": "steps", "eval_steps": 2}),
    Case("multiple_iterations", T + "test_train_multiple_iterations", {**GRPOKIT, "num_iterations": 2}),
    Case("peft_gradient_checkpointing", T + "test_train_peft_with_gradient_checkpointing", {**GRPOKIT, "use_lora": True, "gradient_checkpointing": True}),
    Case("reward_weights", T + "test_train_multiple_reward_funcs_with_weights",
         {**GRPOKIT, "rewards": [*LENGTH, {"name": "length", "target_length": 6}], "reward_weights": [0.7, 0.3]}),
    Case("sync_ref_model", T + "test_train_with_sync_ref_model",
         {**GRPOKIT, "use_lora": False, "beta": 0.1, "sync_ref_model": True, "ref_model_sync_steps": 2}),
    Case("pad_to_multiple_of", T + "test_train_with_pad_to_multiple_of", {**GRPOKIT, "pad_to_multiple_of": 8}),
    Case("off_policy_mask", T + "test_train_with_off_policy_mask", {**GRPOKIT, "off_policy_mask_threshold": 0.5}),
    Case("bias_correction_kl", T + "test_train_with_bias_correction_kl", {**GRPOKIT, "beta": 0.1, "use_bias_correction_kl": True}),
    # Full fine-tuning, as TRL's test: with a LoRA adapter on a model with tied embeddings (builtin:tiny), TRL 1.16's
    # cast looks for `embed_tokens` on the PeftModel's inner model and fails (an error, not a traceback, in train).
    Case("cast_lm_head_to_fp32", T + "test_train_with_cast_lm_head_to_fp32", {**GRPOKIT, "use_lora": False, "cast_lm_head_to_fp32": True}),
    Case("adaptive_entropy", T + "test_train_with_adaptive_entropy_gradient_accumulation",
         {**GRPOKIT, "gradient_accumulation_steps": 2, "entropy_coef": 0.01, "use_adaptive_entropy": True, "entropy_target": 15.0,
          "entropy_coef_delta": 0.005}),
    Case("entropy_filter", T + "test_train_with_entropy_filter", {**GRPOKIT, "top_entropy_quantile": 0.2}),
    Case("vllm_structured_outputs", T + "test_train_vllm_structured_outputs",
         {**GRPOKIT, "use_vllm": True, "vllm_structured_outputs_regex": "<answer>\\n.*\\n</answer>"},
         overrides=("use_vllm", "vllm_structured_outputs_regex")),
    Case("vllm_importance_sampling", T + "test_train_vllm_importance_sampling_correction",
         {**GRPOKIT, "use_vllm": True, "vllm_importance_sampling_correction": True, "vllm_importance_sampling_mode": "sequence_truncate"},
         overrides=("use_vllm", "vllm_importance_sampling_correction", "vllm_importance_sampling_mode")),
    Case("generation_settings", T + "test_train_with_additional_generation_kwargs",
         {**GRPOKIT, "top_p": 0.9, "top_k": 10, "min_p": 0.01, "repetition_penalty": 1.1}),
    Case("normalize_then_sum", T + "test_train_normalize_then_sum_aggregation", {**GRPOKIT, "multi_objective_aggregation": "normalize_then_sum"}),
    Case("scale_rewards_batch", T + "test_train_scale_rewards", {**GRPOKIT, "scale_rewards": "batch"}),
    Case("mask_truncated", T + "test_train_with_mask_truncated_completions", {**GRPOKIT, "mask_truncated_completions": True, "loss_type": "dapo"}),
    Case("more_generations_than_batch", T + "test_train_num_generations_larger_than_batch_size",
         {**GRPOKIT, "num_generations": 6, "gradient_accumulation_steps": 2}),
    Case("delta", T + "test_train_delta_clipping", {**GRPOKIT, "delta": 2.0}),
    Case("dataloader_workers", T + "test_train_multiple_dataloader_workers", {**GRPOKIT, "dataloader_num_workers": 2}),
    Case("generation_kwargs", T + "test_train_with_generation_kwargs",
         {**GRPOKIT, "generation_kwargs": {"do_sample": True, "top_k": 50, "num_beams": 2, "length_penalty": -0.1}}),
    Case("log_completions", T + "test_train_reward_func_with_log_extra", {**GRPOKIT, "learning_rate": 1e-6, "log_completions": True}),
    Case("steps_per_generation", T + "test_prepare_input_called_with_correct_data",
         {**GRPOKIT, "gradient_accumulation_steps": 3, "steps_per_generation": 4, "num_generations": 4, "per_device_train_batch_size": 6,
          "num_iterations": 2, "shuffle_dataset": False}),
    Case("sequence_importance_sampling", T + "test_train_sequence_importance_sampling",
         {**GRPOKIT, "num_iterations": 2, "importance_sampling_level": "sequence"}),
    Case("chat_template_kwargs", T + "test_train_with_chat_template_kwargs",
         {**GRPOKIT, "train_dataset_path": "@chat/train.jsonl", "chat_template_kwargs": {"enable_thinking": False}}),
    Case("liger", T + "test_train_with_liger_grpo_kernel", {**GRPOKIT, "use_liger_kernel": True, "logging_strategy": "no"}, overrides=("use_liger_kernel",)),
    Case("bf16", T + "test_vlm_training", {**GRPOKIT, "bf16": True, "logging_strategy": "no"}, overrides=("bf16",)),
    Case("trust_remote_code", T + "test_trust_remote_code", {**GRPOKIT, "trust_remote_code": True}),
    Case("dispatch_batches", T + "test_iterable_dataset_requires_dispatch_batches_false", {**GRPOKIT, "accelerator_config": {"dispatch_batches": True}}),
    Case("cli_docs", D + "grpo_config.yaml", TRL_CLI),
    Case("cli_docs_mixture", D + "Using dataset mixtures (GRPO)",
         {**TRL_CLI, "dataset_name": None, "datasets": [
             {"path": "json", "data_files": "@chat/train.jsonl", "columns": ["prompt", "solution"], "fraction": 0.75},
             {"path": "json", "data_files": "@chat/test.jsonl", "fraction": 0.25}]}),
    Case("cli_docs_trl_0_18", D + "grpo_config.yaml written for TRL 0.18 (transformers 4.50's TrainingArguments)",
         {**TRL_CLI, "trl_defaults": "0.18.0", "warmup_ratio": 0.1, "overwrite_output_dir": True, "evaluation_strategy": "no"},
         overrides=("warmup_ratio", "overwrite_output_dir", "evaluation_strategy")),
]

# The configs `grpokit train` trains 2 steps: those where grpokit acts on a value rather than passing it to TRL.
FULL_RUNS = {
    "train", "loss_luspo", "eval_on_start", "with_eval", "reward_weights", "sync_ref_model", "vllm_structured_outputs",
    "steps_per_generation", "chat_template_kwargs", "liger", "bf16", "trust_remote_code", "cli_docs", "cli_docs_mixture",
    "cli_docs_trl_0_18",
}  # fmt: skip
FULL = [case for case in TRAINS if case.id in FULL_RUNS]
PASSED_THROUGH = [case for case in TRAINS if case.id not in FULL_RUNS]

REFUSED = [
    Case("eval_without_data", T + "test_train_eval_on_start (without its eval dataset)",
         {**GRPOKIT, "eval_strategy": "steps", "eval_steps": 2, "eval_on_start": True},
         refused="eval_on_start: true evaluates during training, but the config has no evaluation data"),
    Case("reward_weights_and_weight", T + "test_train_multiple_reward_funcs_with_weights (+ a weight: of its own)",
         {**GRPOKIT, "rewards": [{**LENGTH[0], "weight": 2.0}, {"name": "length", "target_length": 6}], "reward_weights": [0.7, 0.3]},
         refused="reward_weights and the weight: of reward 'length' are both given"),
    Case("reward_weights_too_long", T + "test_environment_owned_reward_coexists_with_reward_funcs",
         {**GRPOKIT, "reward_weights": [0.7, 0.3]}, refused="reward_weights has 2 values for 1 rewards (length)"),
    Case("sync_ref_model_with_lora", T + "test_train_with_sync_ref_model, with grpokit's default LoRA",
         {**GRPOKIT, "beta": 0.1, "sync_ref_model": True, "ref_model_sync_steps": 2},
         refused="sync_ref_model: true needs a separate reference model"),
    Case("open_r1_format", "open-r1 recipes (reward_funcs: [accuracy, format])",
         {**TRL_CLI, "reward_funcs": ["accuracy_reward", "format"]},
         refused="reward_funcs: 'format' is neither one of trl grpo's rewards nor an import path"),
    Case("trl_reward_weights_too_long", D + "grpo_config.yaml + reward_weights", {**TRL_CLI, "reward_weights": [1.0, 0.5]},
         refused="reward_weights has 2 values for 1 rewards"),
    Case("warmup_ratio_unpinned", "a TRL 0.18 config without trl_defaults:", {**TRL_CLI, "warmup_ratio": 0.1},
         refused="warmup_ratio is read by neither TRL"),
    Case("use_ipex_pinned", "a TRL 0.14 config (transformers 4.46's TrainingArguments)", {**TRL_CLI, "trl_defaults": "0.14.0", "use_ipex": True},
         refused="use_ipex: True was read by TRL 0.14.0"),
    Case("env", "TRL's TrlParser env:", {**TRL_CLI, "env": {"CUDA_VISIBLE_DEVICES": "0"}}, refused="env: sets environment variables"),
    Case("mixture_streaming", D + "Using dataset mixtures + streaming",
         {**TRL_CLI, "dataset_name": None, "datasets": [{"path": "json", "data_files": "@chat/train.jsonl"}], "streaming": True},
         refused="'streaming: True' cannot be honoured"),
    Case("accelerate_config_unknown", D + "accelerate_config", {**TRL_CLI, "accelerate_config": "zero9"},
         refused="accelerate_config: 'zero9' is neither a file nor one of the accelerate configs TRL ships"),
    Case("accelerate_launch_option", D + "any accelerate launch option (mixed_precision)", {**TRL_CLI, "mixed_precision": "bf16"},
         refused="mixed_precision is an `accelerate launch` option (trl grpo hands it to accelerate)"),
    Case("num_processes_zero", D + "num_processes", {**TRL_CLI, "num_processes": 0}, refused="num_processes: 0 is not a whole number of 1 or more"),
    # A package the config needs and the machine lacks: made unimportable here, as on a machine without it.
    Case("liger_missing", T + "test_train_with_liger_grpo_kernel, on a CUDA machine without liger-kernel",
         {**GRPOKIT, "use_liger_kernel": True}, missing=("liger_kernel",), cuda=True,
         refused="use_liger_kernel: true needs the liger-kernel package, which is not installed"),
    Case("vllm_missing", T + "test_train_vllm, on a CUDA machine without vllm", {**GRPOKIT, "use_vllm": True}, missing=("vllm",), cuda=True,
         refused="use_vllm: true (vllm_mode: colocate) needs the vllm package, which is not installed"),
    Case("deepspeed_missing", D + "accelerate_config: zero2, on a CUDA machine without deepspeed", {**TRL_CLI, "accelerate_config": "zero2"},
         missing=("deepspeed",), cuda=True, refused="needs the deepspeed package, which is not installed"),
    Case("bitsandbytes_missing", "load_in_4bit on a CUDA machine without bitsandbytes", {**GRPOKIT, "load_in_4bit": True, "use_lora": True},
         missing=("bitsandbytes",), cuda=True, refused="load_in_4bit: true needs the bitsandbytes package, which is not installed"),
    Case("tensorboard_missing", "report_to: tensorboard without tensorboard", {**GRPOKIT, "report_to": ["tensorboard"]}, missing=("tensorboard",),
         refused="report_to: tensorboard needs the tensorboard package, which is not installed"),
    Case("mlflow_missing", "mlflow_uri without mlflow", {**GRPOKIT, "mlflow_uri": "http://127.0.0.1:9", "mlflow_experiment_name": "x"},
         missing=("mlflow",), refused="mlflow_uri needs the mlflow package, which is not installed"),
]


@pytest.fixture(scope="module")
def shared_data(tmp_path_factory, tiny_reward_model) -> dict[str, str]:
    """The one dataset every case reads: addition prompts as text (`@plain`) and as chat messages (`@chat`)."""
    root = tmp_path_factory.mktemp("others_data")
    pairs = list(zip(range(10, 22), range(50, 62)))
    write_jsonl(root / "plain.jsonl", [{"prompt": f"{a}+{b}=", "answer": str(a + b)} for a, b in pairs])
    chat = [{"prompt": [{"role": "user", "content": f"{a}+{b}="}], "solution": str(a + b)} for a, b in pairs]
    write_jsonl(root / "chat" / "train.jsonl", chat[:9])
    write_jsonl(root / "chat" / "test.jsonl", chat[9:])
    return {"@plain": str(root / "plain.jsonl"), "@chat": str(root / "chat"), "@reward_model": str(tiny_reward_model)}


def written(config: Any, paths: dict[str, str]) -> Any:
    """`config` with the `@name` placeholders replaced by the shared data's paths, and unset (None) keys left out."""
    if isinstance(config, dict):
        return {key: written(value, paths) for key, value in config.items() if value is not None}
    if isinstance(config, list):
        return [written(value, paths) for value in config]
    if isinstance(config, str) and config.startswith("@"):
        name, _, rest = config.partition("/")
        return paths[name] + (f"/{rest}" if rest else "")
    return config


def write_case(case: Case, paths: dict[str, str], directory: Path) -> Path:
    config = {**written(case.config, paths), "max_steps": 2, "seed": 0, "output_dir": str(directory / "out")}
    path = directory / f"{case.id}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def run(command: str, path: Path, *args: str):
    from typer.testing import CliRunner

    from grpokit.cli import app

    return CliRunner().invoke(app, [command, str(path), *args])


def error_block(output: str) -> list[str]:
    """The one error the CLI printed: its `error:`, `where:` and `fix:` lines."""
    lines = output.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("error: ")), None)
    if start is None:
        return []
    return [lines[start], *[line for line in lines[start + 1 : start + 3] if line.lstrip().startswith(("where:", "fix:"))]]


def inject(case: Case, monkeypatch) -> None:
    """Make the case's packages unimportable (find_spec and import both fail), and CUDA present where it asks."""
    for module in case.missing:
        monkeypatch.setitem(sys.modules, module, None)
    if case.cuda:
        monkeypatch.setattr("grpokit.config.loading._cuda_available", lambda: True)


@pytest.mark.parametrize("case", REFUSED, ids=[case.id for case in REFUSED])
def test_validate_and_train_refuse_the_same_config_with_the_same_message(case, shared_data, tmp_path, monkeypatch):
    path = write_case(case, shared_data, tmp_path)
    inject(case, monkeypatch)
    validated, trained = run("validate", path), run("train", path)
    assert (validated.exit_code, trained.exit_code) == (2, 2), validated.output + trained.output
    assert error_block(validated.output) == error_block(trained.output)
    assert case.refused in error_block(validated.output)[0]
    assert "Traceback" not in validated.output + trained.output
    assert not (tmp_path / "out").exists()  # refused at load: nothing written


def test_a_missing_package_names_the_extra_that_installs_it(shared_data, tmp_path, monkeypatch):
    case = next(case for case in REFUSED if case.id == "liger_missing")
    inject(case, monkeypatch)
    block = error_block(run("validate", write_case(case, shared_data, tmp_path), "--no-trial-step").output)
    assert block[-1].strip() == "fix:   pip install 'grpokit[liger]' (TRL's liger extra), or set use_liger_kernel: false"


@pytest.mark.parametrize("case", TRAINS, ids=[case.id for case in TRAINS])
def test_every_config_that_trains_loads_and_says_what_it_does_not_use(case, shared_data, tmp_path):
    """The quick half: each config loads as `validate` and `train` load it, with its overrides said."""
    from grpokit.config import load_config

    config = load_config(write_case(case, shared_data, tmp_path))
    said = [override.key for override in config.overrides]
    for key in case.overrides:
        assert key in said, f"{key} is not said among {said}"


@pytest.mark.slow
@pytest.mark.parametrize("case", PASSED_THROUGH, ids=[case.id for case in PASSED_THROUGH])
def test_each_keyword_set_grpokit_passes_to_trl_trains_a_step_in_validate(case, shared_data, tmp_path):
    from grpokit.config import load_config

    path = write_case(case, shared_data, tmp_path)
    validated = run("validate", path)
    assert validated.exit_code == 0, validated.output
    assert "trial step ok" in validated.output and "the run trains 2 steps" in validated.output
    said = [line.strip() for line in validated.output.splitlines() if line.startswith("  ") and (" -> " in line or "has no effect" in line)]
    assert said == load_config(path).override_lines  # what train's load says, word for word


@pytest.mark.slow
@pytest.mark.parametrize("case", FULL, ids=[case.id for case in FULL])
def test_every_config_that_validate_passes_trains_two_steps(case, shared_data, tmp_path):
    path = write_case(case, shared_data, tmp_path)
    validated = run("validate", path)
    assert validated.exit_code == 0, validated.output
    assert "trial step ok" in validated.output
    trained = run("train", path)
    assert trained.exit_code == 0, trained.output
    out = tmp_path / "out"
    assert "trained 2 steps" in trained.output
    if (out / "metrics.jsonl").is_file():  # TRL's tests with logging_strategy: no log nothing
        steps = [json.loads(line).get("step") for line in (out / "metrics.jsonl").read_text().splitlines()]
        assert max(step for step in steps if step is not None) == 2
    recorded = [entry["key"] for entry in json.loads((out / "run_info.json").read_text())["overrides"]]
    said_by_validate = [line.strip() for line in validated.output.splitlines() if line.startswith("  ") and (" -> " in line or "has no effect" in line)]
    assert len(said_by_validate) == len(recorded) and all(line.startswith(f"{key}:") for line, key in zip(said_by_validate, recorded))
    for key in case.overrides:
        assert key in recorded
    if not (out / "metrics.jsonl").is_file():
        assert "no report for" in trained.output  # nothing logged, nothing to plot: said, not silent
        return
    report = (out / "report.html").read_text(encoding="utf-8")
    assert all(f"<code>{html.escape(key)}</code>" in report for key in recorded), "the report's config section lists every override"


@pytest.mark.slow
def test_num_processes_from_trls_cli_docs_starts_that_many_processes(shared_data, tmp_path):
    """TRL's docs write `num_processes: 4`; 2 here (2 cores): `grpokit train` starts them, as `trl grpo` would."""
    import os
    import subprocess

    case = Case("num_processes", D + "grpo_config.yaml with num_processes", {**TRL_CLI, "num_processes": 2, "save_strategy": "no"})
    path = write_case(case, shared_data, tmp_path)
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID"):
        environment.pop(name, None)
    validated = subprocess.run([sys.executable, "-m", "grpokit", "validate", str(path), "--no-trial-step"], env=environment,
                               capture_output=True, text=True, timeout=600, check=False)  # fmt: skip
    assert validated.returncode == 0, validated.stderr[-3000:]
    assert "launch: grpokit train starts 2 processes on each of 1 machine(s)" in validated.stdout
    trained = subprocess.run([sys.executable, "-m", "grpokit", "train", str(path)], env=environment, capture_output=True, text=True,
                             timeout=900, check=False)  # fmt: skip
    assert trained.returncode == 0, trained.stderr[-5000:]
    assert "num_processes asks for 2 processes on 1 machine(s)" in trained.stdout + trained.stderr
    assert json.loads((tmp_path / "out" / "run_info.json").read_text())["hardware"]["processes"] == 2
