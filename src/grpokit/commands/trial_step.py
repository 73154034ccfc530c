"""`grpokit validate`'s trial step: one real GRPO step with the config's TRL settings and rewards, on the built-in model.

Some values are only looked at by TRL, transformers or torch inside the training loop (`scale_rewards:
banana` when the first advantages are computed, a reward column dropped by `remove_unused_columns`, a
loss that needs another `importance_sampling_level`). Rather than keep a list of such rules, validate
runs the loop itself: TRL's `GRPOTrainer` with this config's settings and reward functions on a few
rows of its data, for one optimizer step, with `builtin:tiny` (0.9 M parameters, any UTF-8 text)
standing in for the model. What changes is only what a trial on this machine needs: no checkpoints,
trackers, Hub pushes, vLLM or half precision, completions of at most `TRIAL_COMPLETION_TOKENS`
tokens, and one process. It takes a few seconds.

It also counts, with transformers' own arithmetic on the full dataset, the optimizer steps the real
run would train, so a run that would train nothing is an error.
"""

from __future__ import annotations

import logging
import tempfile
import time
import warnings
from dataclasses import dataclass
from typing import Any

from grpokit.config.schema import RunConfig
from grpokit.config.trl_fields import SECRET_TRL_FIELDS, build_grpo_config
from grpokit.config.value_rules import rejected_value_error
from grpokit.errors import ConfigError, GrpokitError
from grpokit.model.loading import load_model, load_tokenizer, lora_config
from grpokit.rewards.agent import AgentSetup
from grpokit.rewards.reward_set import RewardSet

logger = logging.getLogger("grpokit.validate")

TRIAL_MODEL = "builtin:tiny"
TRIAL_AGENT_MODEL = "builtin:tiny-chat"  # with tools: TRL's Qwen2.5 template, which passes TRL's tool-calling checks
TRIAL_COMPLETION_TOKENS = 8
TRIAL_ROW_POOL = 256  # the trial's prompts are the shortest of the first rows
# What a one-step trial on this machine changes; every other TRL setting is the config's own.
TRIAL_SETTINGS: dict[str, Any] = {
    "save_strategy": "no",
    "eval_strategy": "no",
    "eval_on_start": False,  # the trial has no eval rows; the run's evaluation settings are checked at load
    "do_eval": False,
    "load_best_model_at_end": False,
    "report_to": "none",
    "push_to_hub": False,
    "hub_model_id": None,
    "use_vllm": False,
    "bf16": False,
    "fp16": False,
    "use_cpu": True,
    "torch_compile": False,
    "dataloader_num_workers": 0,
    "log_completions": False,
    "disable_tqdm": True,
    "logging_steps": 1,
    "deepspeed": None,
    "fsdp": "",
    "fsdp_config": None,
    "accelerator_config": None,
    "model_init_kwargs": None,
}
STAGE = "a trial GRPO step on the built-in model"


@dataclass(frozen=True)
class TrialStep:
    """What the trial step showed."""

    total_steps: int  # optimizer steps the real run trains, as transformers counts them for this dataset
    seconds: float
    model: str = TRIAL_MODEL  # the built-in model the step ran on


def trial_trl_args(config: RunConfig) -> dict[str, Any]:
    """The config's TRL settings as the trial runs them (see `TRIAL_SETTINGS`), the run's reward weights included."""
    args = {key: value for key, value in config.trl_args.items() if key not in SECRET_TRL_FIELDS}
    args.update(TRIAL_SETTINGS)
    args["max_completion_length"] = min(config.grpo_config.max_completion_length, TRIAL_COMPLETION_TOKENS)
    args["reward_weights"] = config.reward_weights
    return args


def run_trial_step(config: RunConfig, train_dataset, reward_set: RewardSet, agent: AgentSetup | None = None) -> TrialStep:
    """Run one GRPO step as the config would, on `builtin:tiny`; return the real run's step count.

    With `agent` (tools, environments, a rollout function) the step runs TRL's tool loop with them on
    `builtin:tiny-chat` (its own template: the config's `chat_template:` is checked on the real model's
    tokenizer by validate). `train_dataset` None: the environment makes the tasks; the run trains max_steps.

    Raises:
        ConfigError: TRL, transformers or torch rejected a setting (naming the key and value when the
            message names them), or the real run would train no step.
        GrpokitError: a reward failed as it would in training (`RunError` naming the row).
    """
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="grpokit-trial-") as output_dir, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = _build_trial_trainer(config, train_dataset, reward_set, output_dir, agent)
        total_steps = _total_steps(trainer, config)
        trainer.args.max_steps = 1
        if train_dataset is not None:
            trainer.train_dataset = _shortest_prompts(train_dataset, trainer.args)
        _run(trainer.train, config)
    if total_steps < 1:
        raise ConfigError(
            f"the run would train {total_steps} optimizer steps on {len(trainer.train_dataset)} rows",
            where=config.source,
            fix="set max_steps, or raise num_train_epochs",
        )
    model = TRIAL_AGENT_MODEL if agent is not None and agent.uses_tools else TRIAL_MODEL
    return TrialStep(total_steps=total_steps, seconds=time.perf_counter() - started, model=model)


def _build_trial_trainer(config: RunConfig, train_dataset, reward_set: RewardSet, output_dir: str, agent: AgentSetup | None):
    from transformers.trainer_callback import PrinterCallback, ProgressCallback
    from trl import GRPOTrainer

    args = build_grpo_config(trial_trl_args(config), output_dir=output_dir, source=config.source)
    options = config.options.model_copy(
        update={
            "model_id": TRIAL_AGENT_MODEL if agent is not None and agent.uses_tools else TRIAL_MODEL,
            "chat_template": None,
            "load_in_4bit": False,
            "dtype": "float32",
            "attn_implementation": None,
            "revision": None,
            "trust_remote_code": False,
            "lora_target_modules": "all-linear",
        }
    )
    model = load_model(options, gradient_checkpointing=args.gradient_checkpointing)
    trainer = _run(
        lambda: GRPOTrainer(
            model=model,
            reward_funcs=list(reward_set.funcs),  # a copy: TRL appends the environments' get_reward to its list
            args=args,
            train_dataset=train_dataset,
            processing_class=load_tokenizer(options),
            peft_config=lora_config(options),
            **(agent.trainer_kwargs() if agent is not None else {}),
        ),
        config,
    )
    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)
    return trainer


def _total_steps(trainer, config: RunConfig) -> int:
    """transformers' count of optimizer steps for the config's max_steps / epochs and the full dataset."""
    trainer.args.max_steps = config.grpo_config.max_steps
    values = trainer.set_initial_training_values(trainer.args, trainer.get_train_dataloader())
    return int(values[-1])


def _shortest_prompts(dataset, args):
    """Enough rows for one generation batch, the shortest prompts among the first rows (a faster trial)."""
    needed = max(1, args.generation_batch_size // args.num_generations)
    pool = min(len(dataset), TRIAL_ROW_POOL)
    prompts = dataset.select(range(pool))["prompt"]
    shortest = sorted(range(pool), key=lambda i: len(str(prompts[i])))[:needed]
    return dataset.select(sorted(shortest))


def _run(action, config: RunConfig):
    """`action()`, with what TRL / transformers / torch raise turned into one `ConfigError`."""
    try:
        return action()
    except GrpokitError:
        raise
    except (ValueError, TypeError, KeyError, NotImplementedError, RuntimeError, AttributeError) as error:
        message = f"{type(error).__name__}: {error}" if isinstance(error, KeyError) else str(error)
        raise rejected_value_error(message, config.trl_args, config.source, stage=STAGE) from None
