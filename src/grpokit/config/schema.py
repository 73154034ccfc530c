"""The config schema: grpokit's own options, and `RunConfig`, the resolved config every stage receives.

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
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from grpokit.config.agents import AgentOptions
from grpokit.config.distributed import DistributedSetup
from grpokit.config.dynamic_sampling import DynamicSamplingOptions
from grpokit.config.health import HealthOptions
from grpokit.config.overrides import Override, lines
from grpokit.config.rewards import RewardSpec
from grpokit.config.sagemaker import SageMakerSettings
from grpokit.config.trl_fields import GRPOKIT_TRL_DEFAULTS, SECRET_TRL_FIELDS
from grpokit.data.hub import LoadDatasetOptions
from grpokit.data.mixture import DatasetMixtureOptions
from grpokit.data.options import DatasetOptions
from grpokit.secrets import mask_secrets

WANDB_TOKEN_PROJECT = "grpokit"  # the W&B project when a config sets wandb_token but no wandb_project
CHECKPOINTS_DIR = "checkpoints"  # checkpoint_dir's default, under output_dir
TRAINING_DATA_SOURCES = ("train_dataset_path", "load_dataset", "dataset_mixture")  # a config names exactly one


class GrpokitOptions(AgentOptions):
    """grpokit's own options. Every other top-level key must be a field of TRL's GRPOConfig.

    The agent keys (`tools`, `environment`, `environment_args`, `rollout_func`, `chat_template`) come from
    `grpokit.config.agents.AgentOptions`.
    """

    # Frozen: the options are resolved once; what the load changes (CPU fallbacks, ...) makes a new copy
    model_config = ConfigDict(extra="forbid", frozen=True)

    # The TRL release the file was written against (see docs/migrating.md)
    trl_defaults: str | None = Field(
        None,
        description="A TRL version, e.g. '0.17.0' (the AWS sample's): every TRL field the file does not set takes "
        "that release's default (tables for TRL 0.14.0 to today ship with grpokit). None: the installed TRL's.",
    )
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
    lora_target_modules: list[str] | Literal["all-linear"] | None = Field(
        "all-linear",
        description="Modules that get adapters: 'all-linear' or a list of module names. None: PEFT's default for "
        "the model's architecture (what `trl grpo` does).",
    )
    lora_modules_to_save: list[str] | None = Field(
        None, description="Modules trained in full and saved next to the adapter (e.g. lm_head). TRL: lora_modules_to_save."
    )
    use_rslora: bool = Field(False, description="Rank-stabilised LoRA: scale adapters by lora_alpha/sqrt(r), not lora_alpha/r.")
    use_dora: bool = Field(False, description="DoRA: weight-decomposed LoRA (a learned magnitude per output; slower).")
    load_in_4bit: bool = Field(
        False,
        description="QLoRA: load the base model in 4-bit NF4 with double quantization (bitsandbytes; on a GPU or, "
        "through its CPU backend, on the CPU).",
    )
    load_in_8bit: bool = Field(
        False, description="Load the base model in 8-bit (bitsandbytes; GPU or CPU) and train LoRA adapters."
    )
    merge_weights: bool = Field(False, description="Save a merged model instead of the LoRA adapter.")
    # Several processes (see docs/distributed.md; the process count comes from the launcher)
    distributed: str | None = Field(
        None,
        description="Sharding preset: ddp, fsdp, fsdp2, deepspeed_zero2, deepspeed_zero3, or the path of your own "
        "accelerate, FSDP or DeepSpeed config. None: plain data parallel when launched on several processes.",
    )
    # Data
    train_dataset_path: str | None = Field(
        None,
        description="Training data: JSON, JSONL, CSV, Parquet, a dataset.json directory or save_to_disk dir. "
        "Required unless load_dataset is set.",
    )
    load_dataset: LoadDatasetOptions | None = Field(
        None,
        description="Instead of train_dataset_path: a dataset read with datasets.load_dataset (a Hub id or a local "
        "folder), as TRL's dataset_name, dataset_config, dataset_train_split and dataset_test_split.",
    )
    dataset_mixture: DatasetMixtureOptions | None = Field(
        None,
        description="Instead of train_dataset_path: several datasets mixed as TRL mixes them ({datasets: [{path, name, "
        "data_files, split, columns, fraction}, ...], test_split_size}); TRL's `datasets:`. See docs/migrating.md.",
    )
    test_dataset_path: str | None = Field(
        None, description="Optional evaluation data, same formats (with train_dataset_path; the other sources have their own)."
    )
    dataset: DatasetOptions = Field(default_factory=DatasetOptions, description="How rows become prompts.")
    max_prompt_length: int | None = Field(
        None,
        gt=0,
        description="Longest prompt in tokens (chat template applied). None: what fits the model's context "
        "together with max_completion_length. Longer prompts are an error at load, unless truncate_prompts.",
    )
    truncate_prompts: bool = Field(
        False,
        description="Cut prompts longer than max_prompt_length (keeping their end, as TRL 0.x did) instead of "
        "stopping with an error; the count is logged.",
    )
    # Rewards
    rewards: list[RewardSpec] | None = Field(
        None,
        description="Reward functions with weights and parameters. None: rouge_l, length and format; with an "
        "environment:, only the environment's get_reward().",
    )
    dynamic_sampling: DynamicSamplingOptions = Field(
        default_factory=DynamicSamplingOptions,
        description="Train only on groups whose completions got different rewards (DAPO): `true`, or "
        "{enabled, max_rounds}. See docs/efficiency.md.",
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
    stop_timeout: float = Field(
        75.0,
        gt=0,
        description="Seconds the current step may still run after SIGTERM or Ctrl-C before the process exits "
        "without a checkpoint for it (SageMaker kills 120 s after SIGTERM). A second signal exits at once.",
    )
    # Run health (see docs/health.md)
    health: HealthOptions = Field(
        default_factory=HealthOptions,
        description="Health checks (NaN, zero reward spread, truncation, length, entropy, KL, reward hacking) and the "
        "hang watchdog: each with a threshold and an action, warn or stop (checkpoint, then exit code 3; hang: 4).",
    )
    # Tracking (AWS sample keys)
    mlflow_uri: str | None = Field(None, description="MLflow tracking URI (http(s)://, file:, sqlite:, or a SageMaker ARN).")
    mlflow_experiment_name: str | None = Field(None, description="MLflow experiment; tracking is on when this and mlflow_uri are set.")
    wandb_project: str | None = Field(
        None, description=f"Weights & Biases project; W&B is on when set, or when wandb_token is (project '{WANDB_TOKEN_PROJECT}')."
    )
    wandb_token: str | None = Field(
        None,
        description="W&B API key; a non-empty one turns W&B on, as in the AWS sample. Prefer the WANDB_API_KEY "
        "environment variable.",
    )
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

    @model_validator(mode="after")
    def _one_training_dataset(self) -> GrpokitOptions:
        sources = [name for name in TRAINING_DATA_SOURCES if getattr(self, name) is not None]
        if not sources and self.environment is None:  # an environment may make its own tasks
            raise ValueError(
                "no training data: set train_dataset_path (a local file or directory), load_dataset (TRL: dataset_name) "
                "or dataset_mixture (TRL: datasets); or an environment: that makes its own tasks"
            )
        if len(sources) > 1:
            raise ValueError(f"set one source of training data, not {' and '.join(sources)}")
        if self.test_dataset_path is not None and self.train_dataset_path is None:
            raise ValueError(
                f"test_dataset_path goes with train_dataset_path; {sources[0]} names its own test split "
                "(load_dataset.test_split, dataset_mixture.test_split_size)"
            )
        if self.load_in_4bit and self.load_in_8bit:
            raise ValueError("load_in_4bit and load_in_8bit are both true: choose one")
        return self

    @property
    def resolved_wandb_project(self) -> str | None:
        """The W&B project to track to: `wandb_project`, or grpokit's when only `wandb_token` is set (the sample's trigger)."""
        return self.wandb_project or (WANDB_TOKEN_PROJECT if self.wandb_token else None)

    @property
    def resolved_checkpoint_dir(self) -> str:
        return self.checkpoint_dir or str(Path(self.output_dir) / CHECKPOINTS_DIR)


@dataclass(frozen=True)
class HubSettings:
    """`push_to_hub` and the `hub_*` TRL fields: whether and where grpokit pushes the final model (`outputs.hub`)."""

    push: bool = False
    model_id: str | None = None  # hub_model_id
    private: bool | None = None  # hub_private_repo
    revision: str | None = None  # hub_revision
    strategy: str | None = None  # hub_strategy (grpokit pushes the final model only)
    token: str | None = None  # hub_token: a secret, kept out of GRPOConfig (prefer HF_TOKEN)


@dataclass(frozen=True)
class RunConfig:
    """One resolved config: read from its file once per process by `load_config`, never changed after.

    - `options`: grpokit's own keys, typed sections included;
    - `trl_args`: TRL's fields as resolved (installed TRL's defaults < `trl_defaults:` release <
      grpokit's defaults < the file, then the CPU fallbacks and what the `distributed:` file carries),
      read-only; `trl_origins` says where each value came from;
    - `distributed`: the resolved `distributed:` preset or file (None when unset);
    - `reward_specs`: the run's rewards in order (the default three, the reward model included);
    - `overrides`: every value the config sets that the run does not use as written (changed for this
      machine or launch, or acting on nothing), with why: the log, `validate`, `run_info.json` and the
      report read this one list (`config.overrides`);
    - `grpo_config`: TRL's `GRPOConfig` of this process, built once at load with everything TRL checks
      already in it (the reward weights too); every stage reads this one object. None only when the
      config was loaded to check a job of another size (`load_config(world_size=N)` in a launcher).

    grpokit reads the TRL fields it acts on through the accessors below (`hub`, `report_to`,
    `run_name`), never with `trl_args.get(...)` outside `grpokit.config`.
    """

    options: GrpokitOptions
    trl_args: Mapping[str, Any]
    source: str
    base_dir: Path
    distributed: DistributedSetup | None = None
    reward_specs: tuple[RewardSpec, ...] = ()
    overrides: tuple[Override, ...] = ()
    trl_origins: Mapping[str, str] = field(default_factory=dict)  # TRL field -> where its value came from (trl_versions)
    grpo_config: Any = None  # trl.GRPOConfig

    @property
    def override_lines(self) -> list[str]:
        """One line per override, as the log and `grpokit validate` show them."""
        return lines(self.overrides)

    @property
    def reward_weights(self) -> list[float]:
        """Each reward's weight, in `reward_specs` order: TRL's `reward_weights`."""
        return [spec.weight for spec in self.reward_specs]

    def grpo_config_kwargs(self) -> dict[str, Any]:
        """The keyword arguments `GRPOConfig` is built from (besides `output_dir`).

        The `distributed:` setup's fields (fsdp, fsdp_config, deepspeed, ...) first: keys in the config win;
        secrets left out (transformers pickles GRPOConfig into every checkpoint); `push_to_hub` off (grpokit
        pushes the final, possibly merged, model itself: `outputs.hub`); the reward weights from `rewards:`;
        `trust_remote_code` from grpokit's option of that name (the one key both share): TRL reads it only to
        load the same model again (the reference model, vLLM's copy), so it follows what grpokit loads.
        """
        preset = self.distributed.trl_args if self.distributed is not None else {}
        kwargs = {key: value for key, value in {**preset, **self.trl_args}.items() if key not in SECRET_TRL_FIELDS}
        kwargs.pop("push_to_hub", None)
        kwargs["reward_weights"] = self.reward_weights
        kwargs["trust_remote_code"] = self.options.trust_remote_code
        return kwargs

    @property
    def hub(self) -> HubSettings:
        """`push_to_hub` and the `hub_*` fields as the config sets them."""
        trl = self.trl_args
        return HubSettings(
            push=bool(trl.get("push_to_hub")),
            model_id=trl.get("hub_model_id"),
            private=trl.get("hub_private_repo"),
            revision=trl.get("hub_revision"),
            strategy=trl.get("hub_strategy"),
            token=trl.get("hub_token"),
        )

    @property
    def report_to(self) -> tuple[str, ...]:
        """TRL's `report_to` as a list of integration names ("none" left out; TRL's default is "none")."""
        value = self.trl_args.get("report_to", "none")
        names = [value] if isinstance(value, str) else list(value or [])
        return tuple(name for name in names if name != "none")

    @property
    def run_name(self) -> str | None:
        """TRL's `run_name`, when the config sets one."""
        return self.trl_args.get("run_name") or None

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
