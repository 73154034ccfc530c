"""What the AWS SageMaker GRPO sample did with its `args.yaml`: the facts `grpokit convert` reproduces.

The sample (aws-samples/amazon-sagemaker-generativeai, `3_distributed_training/reinforcement-learning/
grpo/trl/torchrun/scripts/train.py`, with `trl==0.17.0`) parsed `args.yaml` into its own
`ScriptArguments` and transformers' `TrainingArguments`, then:

- always loaded the base model in 4-bit NF4 with double quantization, compute dtype bfloat16 when
  `bf16` is set (float32 otherwise), ran `prepare_model_for_kbit_training`, and used Flash Attention 2
  when `bf16` is set;
- put LoRA on all linear layers (`lora_r`, `lora_alpha`, `lora_dropout`, bias none);
- built `GRPOConfig` from a few fields only (`SAMPLE_GRPO_FIELDS`) plus some values of its own
  (`SAMPLE_HARD_CODED`): every other key of `args.yaml` (`top_p`, `max_completion_length`, ...) was
  read and never used, so TRL 0.17.0's defaults applied;
- scored with three rewards: ROUGE-L precision against the `answer` column, a one-sided length reward
  `min(len + 1, 512) / 512`, and a format reward;
- resumed from the last checkpoint in `checkpoint_dir`; merged the adapter into a float16 model when
  `merge_weights` is set; tracked to MLflow when `mlflow_uri` and `mlflow_experiment_name` are set and
  to W&B when `wandb_token` is non-empty.

The accelerate variant (`.../grpo/trl/accelerate/scripts/grpo_advanced.py`, `trl==0.16.1`) is TRL's
own `grpo.py` example: `trl grpo` keys (see `grpokit.config.trl_cli`), scored by the reward model alone.
"""

from __future__ import annotations

SAMPLE_TRL_VERSION = "0.17.0"  # torchrun/scripts/requirements.txt
ACCELERATE_SAMPLE_TRL_VERSION = "0.16.1"  # accelerate/README.md and scripts/requirements.txt
# The sample's own ScriptArguments, with train.py's defaults (None: no default there).
SAMPLE_SCRIPT_DEFAULTS: dict[str, object] = {
    "checkpoint_dir": None,
    "lora_r": 8,
    "lora_alpha": 16,
    "lora_dropout": 0.1,
    "merge_weights": False,
    "mlflow_uri": None,
    "mlflow_experiment_name": None,
    "model_id": None,
    "temperature": 0.2,
    "top_p": 0.9,
    "token": None,
    "train_dataset_path": None,
    "test_dataset_path": None,
    "use_vllm": False,
    "wandb_token": "",
    "wandb_project": "project",
}
# TrainingArguments fields train.py passed on to GRPOConfig (the rest of args.yaml was never used).
SAMPLE_GRPO_FIELDS = (
    "per_device_train_batch_size",
    "per_device_eval_batch_size",
    "gradient_accumulation_steps",
    "num_train_epochs",
    "learning_rate",
    "bf16",
    "save_steps",
)
SAMPLE_GRPO_FROM_SCRIPT = ("temperature", "use_vllm")  # its own ScriptArguments passed to GRPOConfig
SAMPLE_HARD_CODED: dict[str, object] = {
    "logging_strategy": "steps",
    "logging_steps": 10,
    "log_on_each_node": False,
    "ddp_find_unused_parameters": False,
    "save_strategy": "steps",
    "save_total_limit": 1,
    "ignore_data_skip": True,
}
# With fsdp and fsdp_config set, train.py passed those instead of gradient_checkpointing.
SAMPLE_FSDP_FIELDS = ("fsdp", "fsdp_config")
SAMPLE_FSDP_HARD_CODED: dict[str, object] = {"gradient_checkpointing_kwargs": {"use_reentrant": False}}
SAMPLE_LENGTH_TARGET = 512
# Keys that only the sample's args.yaml uses (beyond model_id and train_dataset_path).
SAMPLE_MARKER_KEYS = frozenset(SAMPLE_SCRIPT_DEFAULTS) - {"model_id", "train_dataset_path"}
# grpokit keys whose presence says the file was written for grpokit, not copied from the sample.
GRPOKIT_ONLY_KEYS = frozenset({"rewards", "dataset", "trl_defaults", "use_lora", "load_in_4bit", "distributed", "sagemaker"})


def looks_like_aws_sample(raw_keys: set[str], trl_fields: frozenset[str] | set[str]) -> bool:
    """Whether a config has only the AWS sample's flat keys (its ScriptArguments and TRL fields).

    True when it sets `model_id` and `train_dataset_path`, at least two more of the sample's own keys
    (`checkpoint_dir`, `mlflow_uri`, `merge_weights`, `wandb_token`, ...), and nothing else but TRL fields.
    """
    if not {"model_id", "train_dataset_path"} <= raw_keys or raw_keys & GRPOKIT_ONLY_KEYS:
        return False
    if len(raw_keys & SAMPLE_MARKER_KEYS) < 2:
        return False
    return raw_keys <= set(SAMPLE_SCRIPT_DEFAULTS) | set(trl_fields)


def aws_sample_warning(source: str, trl_version: str) -> str:
    """The one warning line for a config that only has the sample's flat keys."""
    return (
        f"{source} has only the AWS sample's flat keys: it trains with TRL {trl_version}'s defaults and grpokit's "
        f"rewards, not what the sample trained (TRL {SAMPLE_TRL_VERSION}: beta 0.04, loss_type bnpo, "
        "max_prompt_length 512, 4-bit base model, its three rewards); "
        f"`grpokit convert aws-sample {source} -o grpokit.yaml` writes a config that reproduces it"
    )
