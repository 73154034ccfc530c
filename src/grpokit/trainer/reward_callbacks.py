"""The reward side of the training loop: per-reward zero spread in every log, failure counts over ranks.

- `RewardSpreadCallback` adds `rewards/<name>/frac_zero_std` to each training log: the share of
  groups whose completions one reward scored alike (the statistic is `rewards.groups.zero_spread_fraction`).
  TRL logs `frac_reward_zero_std` only for the weighted total; the health check `health.zero_spread`
  (`grpokit.trainer.health`) names these per-reward shares when TRL's total stays high.
- Reward failures counted under `on_error: zero`: each rank scores its own completions, so each
  `GuardedReward` counts only its rank's failures. What the run reports (`rewards/<name>/failures` in
  metrics.jsonl, the warning at the end) is the sum over ranks: `summed_over_ranks` all-reduces the
  counts (every rank must call it, in the same order), and `FailureCountsAcrossRanks` does so at every
  log, on every rank, before metrics.jsonl is written.

Both are among the run's callbacks (`grpokit.trainer.run_callbacks`), which fixes their place in the order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from transformers import TrainerCallback

from grpokit.compat.trl_internals import recent_generation_batch
from grpokit.rewards.groups import zero_spread_fraction


class RewardSpreadCallback(TrainerCallback):
    """Adds `rewards/<name>/frac_zero_std` to each training log.

    It reads the per-completion scores of the last generation batch that GRPOTrainer keeps for its
    completions table (through `grpokit.compat`, gathered across processes, groups contiguous); when a
    TRL version lacks them, only TRL's own `frac_reward_zero_std` remains. Place it before the callbacks
    that record logs.
    """

    def __init__(self, trainer: Any) -> None:
        self.trainer = trainer

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs or "train_runtime" in logs:
            return
        if any(key.startswith("eval_") for key in logs):
            return
        logs.update(self.per_reward_fractions(args.num_generations))

    def per_reward_fractions(self, group_size: int) -> dict[str, float]:
        batch = recent_generation_batch(self.trainer)
        scores_by_reward = batch.rewards if batch is not None else {}
        fractions = {}
        for name in getattr(self.trainer, "reward_func_names", []):
            fraction = zero_spread_fraction(list(scores_by_reward.get(name, ())), group_size)
            if fraction is not None:
                fractions[f"rewards/{name}/frac_zero_std"] = fraction
        return fractions


def summed_over_ranks(counts: dict[str, int]) -> dict[str, int]:
    """`counts` summed over the processes of the job (unchanged in a single process)."""
    import torch
    import torch.distributed as dist

    if not counts or not (dist.is_available() and dist.is_initialized()):
        return dict(counts)
    names = sorted(counts)  # the same reward names on every rank
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    totals = torch.tensor([counts[name] for name in names], dtype=torch.int64, device=device)
    dist.all_reduce(totals, op=dist.ReduceOp.SUM)
    return dict(zip(names, (int(value) for value in totals.tolist())))


class FailureCountsAcrossRanks(TrainerCallback):
    """Keeps the job-wide failure counts current; call it for them (as `MetricsJsonlCallback`'s `failure_counts`).

    The Trainer calls `on_log` on every rank at the same step, so the all-reduce there is collective.
    """

    def __init__(self, local_counts: Callable[[], dict[str, int]]) -> None:
        self.local_counts = local_counts
        self.latest: dict[str, int] | None = None

    def on_log(self, args, state, control, **kwargs):
        self.latest = summed_over_ranks(self.local_counts())

    def __call__(self) -> dict[str, int]:
        return dict(self.latest) if self.latest is not None else self.local_counts()
