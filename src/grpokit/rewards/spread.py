"""Per-reward zero-spread statistics during training.

GRPO learns from the differences between the completions of one prompt (a group): a group whose
completions all score the same has zero advantage and teaches nothing. TRL logs
`frac_reward_zero_std`, the share of such groups for the weighted total reward. This callback adds the
same share per reward, `rewards/<name>/frac_zero_std`, to every training log (so metrics.jsonl and the
trackers record it). The health check `health.zero_spread` (`grpokit.trainer.health`) warns or stops
when TRL's total share stays high, naming these per-reward shares.
"""

from __future__ import annotations

import math
from typing import Any

from transformers import TrainerCallback

from grpokit.compat.trl_internals import recent_generation_batch


def zero_spread_fraction(scores: list[float], group_size: int, *, tolerance: float = 1e-6) -> float | None:
    """The share of consecutive groups of `group_size` scores whose scores are all equal (NaN = None: skipped).

    A group with no score left is skipped; None when no group has a score. A last, incomplete group is
    ignored.

    Example:
        >>> zero_spread_fraction([1, 1, 0, 1, 2, 2], group_size=2)
        0.6666666666666666
    """
    fractions = []
    for start in range(0, len(scores) - group_size + 1, group_size):
        present = [s for s in scores[start : start + group_size] if s is not None and not math.isnan(s)]
        if present:
            fractions.append(max(present) - min(present) <= tolerance)
    return sum(fractions) / len(fractions) if fractions else None


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
