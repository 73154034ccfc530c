"""One training batch out of several generation rounds: keep the rows of informative groups, in order.

TRL's generate-and-score step returns, on each process, its rows of the generation batch as padded
tensors (`prompt_ids` left-padded, `completion_ids` and the per-token tensors right-padded,
`advantages` per row). Groups of `num_generations` rows are contiguous in the order of the processes,
and a group may span processes. `BatchRounds` collects the rounds of one step together with the
zero-spread flag of every group (the same on every process: it comes from the rewards gathered over
all of them), decides how large the next round must be, and assembles the batch this process trains
on: its first rows from informative groups, then, only when the rounds ran out, rows of zero-spread
groups to fill it.

Everything here is plain tensor bookkeeping; `grpokit.trainer.dynamic_sampling.trainer` runs the rounds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from grpokit.errors import RunError

# How each tensor TRL 1.16's `_generate_and_score_completions` returns is padded when rounds are joined.
LEFT_PADDED = {"prompt_ids": None, "prompt_mask": 0}  # None: the tokenizer's pad token id
RIGHT_PADDED = {
    "completion_ids": None,
    "completion_mask": 0,
    "tool_mask": 1,
    "old_per_token_logps": 0.0,
    "ref_per_token_logps": 0.0,
    "sampling_per_token_logps": 0.0,
    "importance_sampling_ratio": 1.0,  # [B, T] per token or [B, 1] per sequence
    "advantages": 0.0,  # [B] in TRL; [B, T] in subclasses that give per-token advantages
}
RECOUNTED = ("num_items_in_batch",)  # the loss normalizer, recounted over the rows kept


@dataclass(frozen=True)
class RoundsSummary:
    """What one step's rounds cost and kept, over all processes (the same figures on every process)."""

    rounds: int
    groups: int  # groups generated in all rounds
    zero_spread_groups: int  # of those, groups whose completions all got the same reward
    zero_spread_rows_trained: int  # rows of zero-spread groups that fill the batch because the rounds ran out
    extra_rows: int  # completions generated after the first round
    group_size: int

    @property
    def groups_dropped(self) -> float:
        """Zero-spread groups generated and not trained on."""
        return self.zero_spread_groups - self.zero_spread_rows_trained / self.group_size


class BatchRounds:
    """The generation rounds of one step on one process, and the batch they make.

    Args:
        group_size: completions per prompt (`num_generations`).
        world_size: processes generating in lockstep; `process_index` is this one.
        target_rows: rows this process trains on (its share of the generation batch).
    """

    def __init__(self, *, group_size: int, world_size: int, process_index: int, target_rows: int) -> None:
        self.group_size = group_size
        self.world_size = world_size
        self.process_index = process_index
        self.target_rows = target_rows
        # Local rows per round must make whole groups over all processes.
        self.rows_unit = group_size // math.gcd(group_size, world_size)
        self.batches: list[dict[str, Any]] = []
        self.row_flags: list[list[list[bool]]] = []  # [round][process][local row]: True = informative

    @property
    def rounds(self) -> int:
        return len(self.batches)

    def add(self, batch: dict[str, Any], group_is_zero_spread: list[bool]) -> None:
        """Record one round: this process's rows and the zero-spread flag of each of the round's groups.

        Raises:
            ValueError: the flags do not cover every process's rows in whole groups.
        """
        rows = int(batch["completion_ids"].shape[0])
        if len(group_is_zero_spread) * self.group_size != rows * self.world_size:
            raise ValueError(
                f"{len(group_is_zero_spread)} groups of {self.group_size} do not cover {self.world_size} "
                f"processes x {rows} rows"
            )
        informative = [not group_is_zero_spread[row // self.group_size] for row in range(rows * self.world_size)]
        self.batches.append(batch)
        self.row_flags.append([informative[p * rows : (p + 1) * rows] for p in range(self.world_size)])

    def informative_rows(self) -> list[int]:
        """Rows from informative groups so far, per process."""
        return [sum(sum(flags[p]) for flags in self.row_flags) for p in range(self.world_size)]

    def missing_rows(self) -> int:
        """The most rows any process still lacks from informative groups (0: every batch can be filled)."""
        return max(max(self.target_rows - count, 0) for count in self.informative_rows())

    def next_round_rows(self) -> int:
        """Rows per process for the next round: what is missing over the share kept so far, in whole groups.

        At least one unit of whole groups, at most one generation batch (a size TRL already generates at
        once, so a round never needs more memory than a plain step).
        """
        generated = sum(len(flags[0]) for flags in self.row_flags) * self.world_size
        kept = sum(self.informative_rows())
        if kept == 0 or generated == 0:
            return self.target_rows
        wanted = math.ceil(self.missing_rows() * generated / kept)
        wanted = math.ceil(wanted / self.rows_unit) * self.rows_unit
        return min(max(wanted, self.rows_unit), self.target_rows)

    def picks(self, process: int | None = None) -> list[tuple[int, int]]:
        """(round, row) of the rows a process trains on: informative rows in order, then zero-spread fillers."""
        process = self.process_index if process is None else process
        rows = [(r, i) for r, flags in enumerate(self.row_flags) for i in range(len(flags[process]))]
        informative = [(r, i) for r, i in rows if self.row_flags[r][process][i]]
        fillers = [(r, i) for r, i in rows if not self.row_flags[r][process][i]]
        return (informative + fillers)[: self.target_rows]

    def summary(self) -> RoundsSummary:
        rows_generated = sum(len(flags[0]) for flags in self.row_flags) * self.world_size
        groups = rows_generated // self.group_size
        informative_groups = sum(self.informative_rows()) // self.group_size  # a group's rows may span processes
        first_round_rows = len(self.row_flags[0][0]) * self.world_size if self.row_flags else 0
        return RoundsSummary(
            rounds=self.rounds,
            groups=groups,
            zero_spread_groups=groups - informative_groups,
            zero_spread_rows_trained=sum(max(self.target_rows - count, 0) for count in self.informative_rows()),
            extra_rows=rows_generated - first_round_rows,
            group_size=self.group_size,
        )

    def assemble(self, *, pad_token_id: int) -> dict[str, Any]:
        """This process's training batch: the picked rows of every tensor, rounds padded to one width.

        `num_items_in_batch` is left out: the caller recounts it over all processes.

        Raises:
            RunError: a round holds a tensor this module does not know how to join (image inputs).
        """
        picks = self.picks()
        offsets = [0]
        for batch in self.batches:
            offsets.append(offsets[-1] + int(batch["completion_ids"].shape[0]))
        index = torch.tensor([offsets[r] + i for r, i in picks], dtype=torch.long)
        assembled: dict[str, Any] = {}
        for key in self.batches[0]:
            if key in RECOUNTED:
                continue
            tensors = [batch[key] for batch in self.batches]
            joined = _join(key, tensors, pad_token_id)
            assembled[key] = joined.index_select(0, index.to(joined.device))
        return assembled


def _join(key: str, tensors: list[Any], pad_token_id: int) -> torch.Tensor:
    if key in LEFT_PADDED:
        side, value = "left", LEFT_PADDED[key]
    elif key in RIGHT_PADDED:
        side, value = "right", RIGHT_PADDED[key]
    else:
        raise RunError(
            f"dynamic sampling cannot join the generation output '{key}' across rounds (image or other "
            "multimodal inputs are not supported)",
            fix="turn dynamic_sampling off for this dataset",
        )
    if not all(isinstance(tensor, torch.Tensor) for tensor in tensors):
        raise RunError(f"dynamic sampling expected a tensor for '{key}', got {type(tensors[0]).__name__}")
    fill = pad_token_id if value is None else value
    if tensors[0].dim() == 1:
        return torch.cat(tensors, dim=0)  # [sum of rows]
    width = max(tensor.shape[1] for tensor in tensors)
    padded = []
    for tensor in tensors:
        missing = width - tensor.shape[1]
        if missing:
            pad = tensor.new_full((tensor.shape[0], missing, *tensor.shape[2:]), fill)
            tensor = torch.cat([pad, tensor] if side == "left" else [tensor, pad], dim=1)
        padded.append(tensor)
    return torch.cat(padded, dim=0)  # [sum of rows, width, ...]
