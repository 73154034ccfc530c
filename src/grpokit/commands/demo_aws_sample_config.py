"""The config of `grpokit demo --task aws-sample`: the AWS sample's args.yaml, converted, and the demo's overrides.

`demo_settings()` is what `grpokit convert aws-sample` makes of the sample's `args.yaml`
(`SAMPLE_ARGS`), less `DEMO_DROPPED`, with `DEMO_OVERRIDES` applied: each override carries its reason
(the sample's hyperparameters are tuned for 0.5-7 B models on GPUs; the demo trains a 1 M parameter
model on 2 CPU cores). `demo_config_yaml()` writes it as `examples/aws_sample/demo.yaml`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

DEFAULT_OUTPUT_DIR = "outputs/demo-aws-sample"
TRAIN_DATA_DIR = "data/train"  # inside the output directory: <dir>/data/train/dataset.json
TEST_DATA_DIR = "data/test"  # the held-out prompts, same layout (for `grpokit eval` afterwards)

# The AWS sample's args.yaml (examples/aws_sample/args.yaml holds the same keys and values; a test keeps them equal).
SAMPLE_ARGS: dict[str, Any] = {
    "model_id": "Qwen/Qwen2.5-0.5B-Instruct",
    "mlflow_uri": "arn:aws:sagemaker:us-east-1:123456789012:mlflow-tracking-server/grpo-mlflow",
    "mlflow_experiment_name": "grpo-qwen2-5-0-5b",
    "checkpoint_dir": "/opt/ml/checkpoints",
    "train_dataset_path": "/opt/ml/input/data/train/",
    "test_dataset_path": "/opt/ml/input/data/test/",
    "output_dir": "/opt/ml/model",
    "lora_r": 8,
    "lora_alpha": 16,
    "lora_dropout": 0.1,
    "merge_weights": True,
    "temperature": 0.2,
    "top_p": 0.9,
    "use_vllm": False,
    "token": "",
    "wandb_project": "grpo",
    "wandb_token": "",
    "bf16": True,
    "num_train_epochs": 1,
    "per_device_train_batch_size": 4,
    "per_device_eval_batch_size": 4,
    "gradient_accumulation_steps": 2,
    "gradient_checkpointing": True,
    "learning_rate": 2.0e-4,
    "save_steps": 50,
    "logging_steps": 10,
    "max_completion_length": 256,
}

# What the demo changes in the converted config, and why. Everything else is the converted sample's:
# trl_defaults 0.17.0 (beta 0.04, loss bnpo, ...), load_in_4bit, LoRA r 8 / alpha 16 / dropout 0.1 on all
# linear layers, merge_weights, the three rewards with weight 1.0, the sample's system prompt (in the data),
# and beta 0.04 (TRL 0.17.0's KL weight): it holds the answers' content while the format is learned.
DEMO_OVERRIDES: dict[str, tuple[Any, str]] = {
    "model_id": ("builtin:tiny-chat", "the shipped 1 M parameter chat model (no download); it follows the format in ~30% of samples"),
    "dtype": ("float32", "no CUDA: grpokit computes in float32 on a CPU anyway (bfloat16 is slow there), this says it without a warning"),
    "attn_implementation": ("sdpa", "Flash Attention 2 needs a CUDA GPU"),
    "bf16": (False, "no CUDA: mixed precision is a GPU feature"),
    "gradient_checkpointing": (False, "a 1 M parameter model's activations are small; recomputing them only costs time"),
    "num_train_epochs": (None, "replaced by max_steps: the demo trains a fixed number of steps"),
    "max_steps": (25, "about 80 s of CPU time on one thread (3 s a step); the held-out format is learned by then"),
    "per_device_train_batch_size": (32, "4 prompts x 8 completions per step; the sample's 4 x 2 accumulation is 1 prompt a step, too few to learn from in minutes"),
    "gradient_accumulation_steps": (1, "see per_device_train_batch_size"),
    "num_generations": (8, "TRL 0.17.0's default, written out: the group size"),
    "learning_rate": (5.0e-3, "LoRA on a 1 M parameter model barely moves in minutes at the sample's 2e-4 (tuned for 0.5-7 B models); measured at seed 0: 1e-2 learns the tags, then loses the content and rambles to the length limit"),
    "lr_scheduler_type": ("constant", "a short run: no decay"),
    "temperature": (1.0, "at the sample's 0.2 nearly every sample ignores the format, so groups have no reward spread"),
    "max_completion_length": (64, "the format's answers take about 40 tokens; the sample's 256 only lets rambling grow"),
    "save_strategy": ("no", "a demo from scratch every time: no checkpoints"),
    "logging_steps": (1, "a curve point per step"),
    "seed": (0, "the same figures on every run"),
    "resume": ("never", "each demo starts from the built-in model"),
}
# Keys of the converted config the demo leaves out.
DEMO_DROPPED: dict[str, str] = {
    "mlflow_uri": "the sample's managed MLflow needs AWS; the demo tracks nothing",
    "mlflow_experiment_name": "see mlflow_uri",
}


def converted_sample_config() -> dict[str, Any]:
    """`SAMPLE_ARGS` as `grpokit convert aws-sample` converts them (the notes left out)."""
    from grpokit.commands.convert import SampleData, convert_aws_sample

    data = SampleData(train=f"{DEFAULT_OUTPUT_DIR}/{TRAIN_DATA_DIR}/", test=f"{DEFAULT_OUTPUT_DIR}/{TEST_DATA_DIR}/")
    return convert_aws_sample(dict(SAMPLE_ARGS), source="args.yaml", data=data).config


def demo_settings(output_dir: str | Path = DEFAULT_OUTPUT_DIR) -> dict[str, Any]:
    """The demo's config: the converted sample, `DEMO_DROPPED` removed, `DEMO_OVERRIDES` applied, writing to `output_dir`."""
    settings = {key: value for key, value in converted_sample_config().items() if key not in DEMO_DROPPED}
    for key, (value, _) in DEMO_OVERRIDES.items():
        if value is None:
            settings.pop(key, None)
        else:
            settings[key] = value
    settings.update(data_placement(Path(output_dir)))
    return settings


EXAMPLE_HEADER = """\
# The config `grpokit demo --task aws-sample` trains with (grpokit.commands.demo_aws_sample_config.demo_config_yaml()
# writes this file; a test keeps the two equal): the AWS sample's args.yaml converted by
# `grpokit convert aws-sample` (examples/aws_sample/grpokit.yaml), with the overrides marked below for a
# 1 M parameter model on 2 CPU cores. The data is the sample's dataset.json layout; the demo writes it.
#
#   grpokit demo --task aws-sample                  # writes the data, trains, measures, reports
#   grpokit demo --task aws-sample --config examples/aws_sample/demo.yaml --set learning_rate=3e-3
#   grpokit train examples/aws_sample/demo.yaml     # after `grpokit demo --task aws-sample` has written the data
#
"""


def demo_config_yaml() -> str:
    """`demo_settings()` as YAML, each override's and each left-out key's reason as a comment (examples/aws_sample/demo.yaml)."""
    import yaml

    lines = [EXAMPLE_HEADER.rstrip("\n")]
    lines += [f"# left out: {key}  ({why})" for key, why in DEMO_DROPPED.items()]
    lines += [f"# left out: {key}  ({why})" for key, (value, why) in DEMO_OVERRIDES.items() if value is None]
    for key, value in demo_settings().items():
        text = yaml.safe_dump({key: value}, sort_keys=False, allow_unicode=True, width=10_000).rstrip("\n")
        if key in DEMO_OVERRIDES:
            lines.append(f"# demo override: {DEMO_OVERRIDES[key][1]}")
        lines.append(text)
    return "\n".join(lines) + "\n"


def data_placement(output_dir: Path) -> dict[str, str]:
    """Where the demo writes its data and model: folders holding `dataset.json`, as the sample's channels."""
    return {
        "output_dir": output_dir.as_posix(),
        "train_dataset_path": f"{(output_dir / TRAIN_DATA_DIR).as_posix()}/",
        "test_dataset_path": f"{(output_dir / TEST_DATA_DIR).as_posix()}/",
    }
