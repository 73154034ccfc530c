"""The only module that touches private parts of TRL and transformers (checked against TRL 1.16.0, transformers 5.23.0).

- `recent_generation_batch(trainer)`: the last generation batch GRPOTrainer keeps for its completions
  table (`GRPOTrainer._logs`): prompts, completions, each reward's scores, advantages;
- `load_checkpoint_weights(trainer, path)`: `Trainer._load_from_checkpoint`, to load a checkpoint's
  weights without training a step;
- `grpo_rules_check(trl_args, world_size)`: TRL's own `GRPOConfig` validation run as if the job had
  `world_size` processes, without setting up any device (overrides `TrainingArguments._setup_devices`
  and `world_size`), so a launcher can check a config for the job it is about to start.
- `GenerationRoundHooks`: a mixin overriding `GRPOTrainer._generate_and_score_completions` and
  `_calculate_rewards`, so dynamic sampling can run several generation rounds per training batch;
  each round comes back as a `GenerationRound`, its batch and its gathered rewards together.

`tests/test_compat.py` checks every one of these against the installed versions.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from grpokit.errors import RunError

# GRPOTrainer._logs keys (TRL 1.16.0: deques of the last generation_batch_size items, gathered across ranks).
RECENT_BATCH_KEYS = ("prompt", "completion", "rewards", "advantages")
# The batch fields TRL resolves in GRPOConfig.__post_init__ before it checks them.
RESOLVED_BATCH_FIELDS = (
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "steps_per_generation",
    "generation_batch_size",
    "num_generations",
    "per_device_eval_batch_size",
    "num_generations_eval",
)


@dataclass(frozen=True)
class RecentBatch:
    """GRPOTrainer's last generation batch: one entry per completion, groups of num_generations contiguous."""

    prompts: list
    completions: list
    rewards: dict[str, list]  # reward name -> one score per completion (NaN where the reward gave None)
    advantages: list


def recent_generation_batch(trainer: Any) -> RecentBatch | None:
    """The last generation batch GRPOTrainer recorded, or None when the trainer keeps none (another TRL)."""
    logs = getattr(trainer, "_logs", None)  # private in TRL 1.16.0 (GRPOTrainer.__init__)
    if not isinstance(logs, Mapping):
        return None
    return RecentBatch(
        prompts=list(logs.get("prompt", ())),
        completions=list(logs.get("completion", ())),
        rewards={name: list(values) for name, values in logs.get("rewards", {}).items()},
        advantages=list(logs.get("advantages", ())),
    )


def load_checkpoint_weights(trainer: Any, checkpoint: str) -> None:
    """Load a checkpoint's weights into the trainer's model (no optimizer step, no training)."""
    trainer._load_from_checkpoint(checkpoint)  # private in transformers 5.23.0 (Trainer)


@dataclass(frozen=True)
class RulesCheck:
    """What TRL's GRPOConfig said about a set of fields: `error` None when it accepted them.

    `resolved` holds the batch fields as TRL had resolved them when it accepted or rejected the config
    (TRL derives generation_batch_size and steps_per_generation before it checks them).
    """

    error: str | None
    resolved: dict[str, Any] = field(default_factory=dict)


@functools.cache
def _config_class_for(world_size: int):
    import torch
    from trl import GRPOConfig

    class GRPOConfigForWorld(GRPOConfig):
        """GRPOConfig as seen by a job of `world_size` processes; sets up no device and no process group."""

        @property
        def world_size(self) -> int:  # public property of TrainingArguments (transformers 5.23.0)
            return world_size

        @property
        def _setup_devices(self):  # private cached_property of TrainingArguments (transformers 5.23.0)
            self._n_gpu = 0  # private field read by TrainingArguments.n_gpu (transformers 5.23.0)
            self.distributed_state = None
            return torch.device("cpu")

    return GRPOConfigForWorld


def grpo_rules_check(
    trl_args: Mapping[str, Any], *, world_size: int, output_dir: str, fields: tuple[str, ...] = ()
) -> RulesCheck:
    """Run TRL's GRPOConfig validation on `trl_args` for a job of `world_size` processes.

    `resolved` holds the batch fields and `fields`, as TRL left them (`scale_rewards: false` -> "none").

    The rules checked are TRL's own (batch arithmetic, eval batch, generation batch against the global
    batch, and every other `__post_init__` check), independent of this machine's devices: precision
    flags are checked by the real `GRPOConfig` in the process that trains.
    """
    config_class = _config_class_for(world_size)
    device_free = {**trl_args, "use_cpu": True, "bf16": False, "fp16": False}
    instance = config_class.__new__(config_class)
    try:
        config_class.__init__(instance, output_dir=output_dir, **device_free)
    except (ValueError, TypeError, ZeroDivisionError) as error:  # TRL 1.16 divides by num_generations unchecked
        return RulesCheck(error=str(error), resolved=_resolved_fields(instance, fields))
    return RulesCheck(error=None, resolved=_resolved_fields(instance, fields))


def _resolved_fields(instance: Any, fields: tuple[str, ...] = ()) -> dict[str, Any]:
    return {name: getattr(instance, name, None) for name in (*RESOLVED_BATCH_FIELDS, *fields)}


@dataclass(frozen=True)
class GenerationRound:
    """One generation round: TRL's generate-and-score output for this process's rows, and the round's rewards.

    `rewards` is the tensor TRL's `_calculate_rewards` returned: `[rows of every process, reward
    functions]`, gathered over all processes, NaN where a reward gave None.
    """

    batch: dict[str, Any]
    rewards: Any


class GenerationRoundHooks:
    """Mixin for a GRPOTrainer subclass that builds each training batch from one or more generation rounds.

    Put it before `GRPOTrainer` in the bases and define `informative_generation_batch`. In training,
    TRL's generate-and-score step goes through `self.informative_generation_batch(inputs,
    generate_round)`, where `generate_round(rows)` runs TRL's own step (generation, rewards, advantages)
    for `rows` and returns a `GenerationRound`: the batch and that round's gathered rewards together.
    Evaluation is left alone. Used by `grpokit.trainer.dynamic_sampling.trainer`.
    """

    _round_rewards: list | None = None  # while a round runs: where `_calculate_rewards` leaves its result

    def informative_generation_batch(
        self, inputs: list[dict], generate_round: Callable[[list[dict]], GenerationRound]
    ) -> dict[str, Any]:
        """The training batch for `inputs` (this process's rows), from one or more `generate_round` calls."""
        raise NotImplementedError(f"{type(self).__name__} must define informative_generation_batch")

    def _calculate_rewards(self, *args, **kwargs):  # private in TRL 1.16.0 (GRPOTrainer)
        rewards = super()._calculate_rewards(*args, **kwargs)  # private in TRL 1.16.0 (GRPOTrainer)
        if self._round_rewards is not None:
            self._round_rewards.append(rewards)
        return rewards

    def _generate_and_score_completions(self, inputs):  # private in TRL 1.16.0 (GRPOTrainer)
        generate = super()._generate_and_score_completions  # private in TRL 1.16.0 (GRPOTrainer)
        if not self.model.training:
            return generate(inputs)
        return self.informative_generation_batch(inputs, functools.partial(self._generation_round, generate))

    def _generation_round(self, generate: Callable[[list[dict]], dict[str, Any]], rows: list[dict]) -> GenerationRound:
        """TRL's step on `rows`, with the rewards TRL computed on the way (the one place they are caught).

        Raises:
            RunError: TRL's step did not score the round through `_calculate_rewards` exactly once (a TRL
                this was not built for).
        """
        scored: list = []
        self._round_rewards = scored
        try:
            batch = generate(rows)
        finally:
            self._round_rewards = None
        if len(scored) != 1:
            raise RunError(
                f"dynamic sampling saw {len(scored)} reward computations for one generation round: this TRL "
                "version scores completions another way than TRL 1.16",
                fix="turn dynamic_sampling off, or install the TRL version in constraints.txt",
            )
        return GenerationRound(batch=batch, rewards=scored[0])
