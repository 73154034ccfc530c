"""The config schema: grpokit's own options, and `RunConfig`, a loaded config ready for the pipeline.

A config file is a flat YAML mapping, as in the AWS GRPO sample's `args.yaml`. Three kinds of key
live side by side:

- grpokit's own options (`GrpokitOptions` below), which include the sample's keys (`model_id`,
  `lora_r`, `train_dataset_path`, `mlflow_uri`, ...) and typed sections (`dataset:`, `rewards:`,
  `sagemaker:`);
- any field of TRL's `GRPOConfig` (which includes transformers' `TrainingArguments`): these pass
  through unchanged, are type-checked against TRL's own annotations, and are finally validated by
  constructing `trl.GRPOConfig` itself (see `grpokit.config.trl_fields`). grpokit never copies TRL's
  field list.

Precedence: defaults < YAML file < `--set KEY=VALUE` overrides (see `grpokit.config.loading`).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from grpokit.config.distributed import distributed_trl_args
from grpokit.config.trl_fields import GRPOKIT_TRL_DEFAULTS, SECRET_TRL_FIELDS, build_grpo_config
from grpokit.data.options import DatasetOptions
from grpokit.launch.sagemaker.settings import SageMakerSettings
from grpokit.outputs.files import CHECKPOINTS_DIR
from grpokit.rewards.reward_set import RewardSpec
from grpokit.secrets import mask_secrets


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
    sagemaker: SageMakerSettings | None = Field(
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
        return self.checkpoint_dir or str(Path(self.output_dir) / CHECKPOINTS_DIR)


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
