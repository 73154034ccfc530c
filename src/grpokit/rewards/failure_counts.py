"""Reward failures counted under `on_error: zero`, summed over every process of the job.

Each rank scores its own completions, so each `GuardedReward` counts only its rank's failures. What
the run reports (`rewards/<name>/failures` in metrics.jsonl, the warning at the end) is the sum over
ranks: `summed_over_ranks` all-reduces the counts (every rank must call it, in the same order), and
`FailureCountsAcrossRanks` does so at every log, on every rank, before metrics.jsonl is written.
"""

from __future__ import annotations

from collections.abc import Callable

from transformers import TrainerCallback


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
