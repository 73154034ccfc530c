"""Dynamic sampling (DAPO): every optimizer step trains on groups whose completions got different rewards.

A group whose completions all got the same total reward has zero advantage: it costs a generation and
a backward pass and teaches nothing. With `dynamic_sampling: true`, each training batch is built like
this, on every process in lockstep:

1. TRL generates and scores the step's batch as usual (the dataloader's prompts): round 1.
2. Each group's spread is read from the rewards gathered over all processes, so every process drops
   the same groups.
3. While some process lacks rows from informative groups and fewer than `max_rounds` rounds ran, one
   more round generates groups for prompts drawn at random from the training set (the same draw on
   every process, seeded by `seed`, the step and the round, so a resumed run draws the same). Its
   size is what is missing over the share kept so far, in whole groups, at most one generation batch.
4. Each process trains on its first rows from informative groups, in order. When the rounds ran out
   first, rows of zero-spread groups fill the rest: they train as in plain GRPO.
5. TRL's loss normalizer (`num_items_in_batch`, the completion tokens of the batch) is recounted over
   the rows kept, so dropped groups no longer dilute the gradient.

Per step, in every training log (metrics.jsonl, the trackers): `dynamic_sampling/groups_dropped`,
`dynamic_sampling/zero_spread_share` (of all groups generated), `dynamic_sampling/generation_rounds`,
`dynamic_sampling/extra_completions` and `dynamic_sampling/extra_generation_seconds` (the cost of the
rounds after the first), `dynamic_sampling/zero_spread_groups_trained` (fillers, when rounds ran out).
TRL's own `frac_reward_zero_std` is then the mean over the rounds.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from trl import GRPOTrainer

from grpokit.compat.trl_internals import GenerationRound, GenerationRoundHooks
from grpokit.config.dynamic_sampling import DynamicSamplingOptions
from grpokit.errors import ConfigError
from grpokit.rewards.groups import weighted_totals, zero_spread_mask, zero_spread_mask_per_reward
from grpokit.trainer.dynamic_sampling.rounds import BatchRounds, RoundsSummary

METRIC_PREFIX = "dynamic_sampling/"
IMAGE_COLUMNS = ("image", "images")


def trainer_class_for(options: DynamicSamplingOptions) -> tuple[type, dict[str, Any]]:
    """The GRPOTrainer class a run uses and the extra keyword arguments it takes."""
    if not options.enabled:
        return GRPOTrainer, {}
    return DynamicSamplingGRPOTrainer, {"dynamic_sampling": options}


def refill_prompt_indices(dataset_size: int, prompts: int, *, seed: int, step: int, batch: int, round_index: int) -> list[int]:
    """`prompts` dataset indices for one extra round: distinct while the dataset has enough, the same on every
    process and in a resumed run (seeded by the run's seed, the step, the generation batch within the step
    and the round).

    Example:
        >>> draw = dict(seed=0, step=5, batch=0, round_index=1)
        >>> refill_prompt_indices(10, 3, **draw) == refill_prompt_indices(10, 3, **draw)
        True
    """
    rng = random.Random(f"grpokit-dynamic-sampling:{seed}:{step}:{batch}:{round_index}")
    if prompts <= dataset_size:
        return rng.sample(range(dataset_size), prompts)
    return rng.choices(range(dataset_size), k=prompts)


@dataclass
class StepStatistics:
    """Dynamic sampling's figures since the last log, summed; `flush()` turns them into per-step log keys."""

    summaries: list[tuple[RoundsSummary, float]] = field(default_factory=list)  # (rounds, extra seconds)
    first_step: int | None = None  # global_step when the first of them was generated

    def record(self, summary: RoundsSummary, extra_seconds: float, *, global_step: int) -> None:
        if self.first_step is None:
            self.first_step = global_step
        self.summaries.append((summary, extra_seconds))

    def flush(self, global_step: int) -> dict[str, float]:
        """Per-step means over the optimizer steps since the first batch recorded (rounds: per generation batch).

        A batch generated at `global_step` g trains step g + 1, so a log at step G covers G - g steps.
        """
        if not self.summaries:
            return {}
        summaries = [summary for summary, _ in self.summaries]
        steps = max(global_step - (self.first_step or 0), 1)
        groups = sum(s.groups for s in summaries)
        logs = {
            "groups_dropped": sum(s.groups_dropped for s in summaries) / steps,
            "zero_spread_share": sum(s.zero_spread_groups for s in summaries) / groups if groups else 0.0,
            "generation_rounds": sum(s.rounds for s in summaries) / len(summaries),
            "extra_completions": sum(s.extra_rows for s in summaries) / steps,
            "extra_generation_seconds": sum(seconds for _, seconds in self.summaries) / steps,
            "zero_spread_groups_trained": sum(s.zero_spread_rows_trained / s.group_size for s in summaries) / steps,
        }
        self.summaries.clear()
        self.first_step = None
        return {METRIC_PREFIX + key: value for key, value in logs.items()}


class DynamicSamplingGRPOTrainer(GenerationRoundHooks, GRPOTrainer):
    """TRL's GRPOTrainer whose training batches hold only groups with reward spread (see the module docstring).

    Raises:
        ConfigError: the training set cannot be indexed (an iterable dataset) or holds images.
    """

    def __init__(self, *args, dynamic_sampling: DynamicSamplingOptions, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.dynamic_sampling = dynamic_sampling
        self.step_statistics = StepStatistics()
        self.generation_batches_at_step: tuple[int, int] = (-1, 0)  # (global step, generation batches at it)
        _check_dataset(self.train_dataset)

    def informative_generation_batch(
        self, inputs: list[dict], generate_round: Callable[[list[dict]], GenerationRound]
    ) -> dict[str, Any]:
        """The training batch for `inputs` (this process's rows): rounds of `generate_round` until it holds informative groups."""
        accelerator = self.accelerator
        rounds = BatchRounds(
            group_size=self.num_generations,
            world_size=accelerator.num_processes,
            process_index=accelerator.process_index,
            target_rows=len(inputs),
        )
        first = generate_round(inputs)
        rounds.add(first.batch, self.zero_spread_flags(first.rewards))
        batch_index = self.next_generation_batch_index()
        extra_started = time.perf_counter()
        while rounds.missing_rows() and rounds.rounds < self.dynamic_sampling.max_rounds:
            rows = self.refill_rows(rounds.next_round_rows(), batch_index=batch_index, round_index=rounds.rounds)
            extra = generate_round(rows)
            rounds.add(extra.batch, self.zero_spread_flags(extra.rewards))
        extra_seconds = time.perf_counter() - extra_started if rounds.rounds > 1 else 0.0
        batch = rounds.assemble(pad_token_id=self.pad_token_id())
        loss_mask = batch["completion_mask"] if "tool_mask" not in batch else batch["completion_mask"] * batch["tool_mask"]
        batch["num_items_in_batch"] = accelerator.gather(loss_mask.sum()).sum()  # TRL's normalizer, over rows kept
        self.step_statistics.record(rounds.summary(), extra_seconds, global_step=self.state.global_step)
        return batch

    def zero_spread_flags(self, rewards) -> list[bool]:
        """One flag per group of a round (all processes): True when its rewards show no spread."""
        scores = rewards.tolist()  # [rows of every process, reward functions], NaN: no score
        if self.multi_objective_aggregation == "normalize_then_sum":  # TRL normalizes each reward per group
            return zero_spread_mask_per_reward(scores, self.num_generations)
        totals = weighted_totals(scores, self.reward_weights.tolist())
        return zero_spread_mask(totals, self.num_generations)

    def refill_rows(self, rows_per_process: int, *, batch_index: int, round_index: int) -> list[dict]:
        """This process's rows of one extra round: random prompts, each `num_generations` times, groups contiguous."""
        world = self.accelerator.num_processes
        prompts = rows_per_process * world // self.num_generations
        indices = refill_prompt_indices(
            len(self.train_dataset),
            prompts,
            seed=self.args.seed,
            step=self.state.global_step,
            batch=batch_index,
            round_index=round_index,
        )
        repeated = [index for index in indices for _ in range(self.num_generations)]
        start = self.accelerator.process_index * rows_per_process
        return [self.train_dataset[index] for index in repeated[start : start + rows_per_process]]

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """TRL's log, plus dynamic sampling's per-step figures in training logs."""
        is_training_log = self.model.training and "train_runtime" not in logs and not any(k.startswith("eval_") for k in logs)
        if is_training_log:
            logs.update(self.step_statistics.flush(self.state.global_step))
        super().log(logs, start_time)

    def next_generation_batch_index(self) -> int:
        """Counts generation batches within one optimizer step (several when steps_per_generation is below
        gradient_accumulation_steps), so each draws its own prompts."""
        step, count = self.generation_batches_at_step
        count = count + 1 if step == self.state.global_step else 0
        self.generation_batches_at_step = (self.state.global_step, count)
        return count

    def pad_token_id(self) -> int:
        tokenizer = getattr(self.processing_class, "tokenizer", self.processing_class)
        return tokenizer.pad_token_id


def _check_dataset(dataset: Any) -> None:
    if dataset is None or not hasattr(dataset, "__getitem__") or not hasattr(dataset, "__len__"):
        raise ConfigError(
            "dynamic_sampling needs a training dataset it can index to draw replacement prompts "
            f"(got {type(dataset).__name__})",
            fix="pass a datasets.Dataset (grpokit's own data loading does), or turn dynamic_sampling off",
        )
    columns = getattr(dataset, "column_names", None) or []
    if any(column in columns for column in IMAGE_COLUMNS):
        raise ConfigError(
            "dynamic_sampling does not support image inputs yet (the training set has an image column)",
            fix="turn dynamic_sampling off for this dataset",
        )
