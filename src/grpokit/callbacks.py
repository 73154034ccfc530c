"""Trainer callbacks grpokit adds to TRL's GRPOTrainer: metrics.jsonl, progress bar, checkpoint markers.

All of them act on the main process only (`state.is_world_process_zero`), so a multi-process run
writes each file once.
"""

from __future__ import annotations

import json
import math
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

COMPLETE_MARKER = "grpokit_complete.json"
SAMPLE_COMPLETIONS_FILE = "sample_completions.jsonl"  # training samples for the report; the demo writes held-out ones


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def truncate_jsonl_after(path: Path, step: int) -> None:
    """Drop the records of `path` past `step` (and lines cut short by a crash): a resumed or restarted
    run then never holds a step twice."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line).get("step", 0) <= step:
                kept.append(line)
        except json.JSONDecodeError:
            continue
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
    os.replace(tmp, path)


class MetricsJsonlCallback(TrainerCallback):
    """Append one JSON object per logged training step to `metrics.jsonl`.

    Each line holds `step`, `epoch`, `step_time` (seconds per optimizer step since the previous line),
    and everything TRL logged (`reward`, `rewards/<name>/mean`, `loss`, `completions/mean_length`, ...),
    plus `rewards/<name>/failures` for rewards configured `on_error: zero`. On resume, lines past the
    resumed step are dropped so the file never holds a step twice.
    """

    def __init__(self, path: str | Path, failure_counts: Callable[[], dict[str, int]] | None = None) -> None:
        self.path = Path(path)
        self.failure_counts = failure_counts
        self._last_time: float | None = None
        self._last_step = 0

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        truncate_jsonl_after(self.path, state.global_step)
        self._last_time = time.perf_counter()
        self._last_step = state.global_step

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs or "train_runtime" in logs:
            return
        if any(key.startswith("eval_") for key in logs):
            record = {"step": state.global_step, **{k: _finite(v) for k, v in logs.items()}}
        else:
            now = time.perf_counter()
            steps = max(state.global_step - self._last_step, 1)
            record = {"step": state.global_step, "epoch": state.epoch, "step_time": (now - (self._last_time or now)) / steps}
            record.update({key: _finite(value) for key, value in logs.items()})
            self._last_time, self._last_step = now, state.global_step
        if self.failure_counts is not None:
            record.update({f"rewards/{name}/failures": count for name, count in self.failure_counts().items()})
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")


class CheckpointMarkerCallback(TrainerCallback):
    """Mark a checkpoint complete once the trainer has written all of it.

    `on_save` runs after model, optimizer, scheduler, RNG and trainer state are on disk, so a
    checkpoint without the marker was cut short (crash, kill, spot interruption) and is never resumed.
    """

    def on_save(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if checkpoint.is_dir():
            write_complete_marker(checkpoint, state.global_step)


def write_complete_marker(checkpoint: Path, step: int) -> None:
    tmp = checkpoint / (COMPLETE_MARKER + ".tmp")
    tmp.write_text(json.dumps({"step": step, "time": time.time()}), encoding="utf-8")
    os.replace(tmp, checkpoint / COMPLETE_MARKER)


class RichProgressCallback(TrainerCallback):
    """A progress bar with the latest reward and loss, on the main process only."""

    def __init__(self, console=None) -> None:
        self.console = console
        self._progress = None
        self._task = None

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            TextColumn("[bold]GRPO"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[status]}"),
            console=self.console,
            transient=False,
        )
        self._progress.start()
        self._task = self._progress.add_task("train", total=state.max_steps, completed=state.global_step, status="")

    def on_step_end(self, args, state, control, **kwargs):
        if self._progress is not None:
            self._progress.update(self._task, completed=state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self._progress is None or not logs:
            return
        parts = [f"{key} {logs[key]:.3f}" for key in ("reward", "loss") if isinstance(logs.get(key), (int, float))]
        if parts:
            self._progress.update(self._task, status=" ".join(parts))

    def on_train_end(self, args, state, control, **kwargs):
        if self._progress is not None:
            self._progress.update(self._task, completed=state.global_step)
            self._progress.stop()
            self._progress = None


class GracefulStopCallback(TrainerCallback):
    """On SIGTERM (spot interruption, SageMaker stop, `kill`) or Ctrl-C: checkpoint after the current step and stop.

    A second Ctrl-C stops at once.

    The flag is shared across processes with an all-reduce, so a signal that reaches one rank stops
    every rank at the same step and the checkpoint is written collectively.
    """

    def __init__(self, signals: tuple[int, ...] | None = None) -> None:
        self.signals = signals if signals is not None else (signal.SIGTERM, signal.SIGINT)
        self.received: int | None = None
        # Set, identically on every rank, when the signal ended training before max_steps.
        self.stopped_early_by: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum, frame) -> None:
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now, without waiting for the checkpoint
        self.received = signum

    def on_train_begin(self, args, state, control, **kwargs):
        import threading

        if threading.current_thread() is not threading.main_thread():
            return
        for signum in self.signals:
            self._previous[signum] = signal.signal(signum, self._handle)

    def _any_rank_received(self) -> bool:
        import torch
        import torch.distributed as dist

        flag = self.received is not None
        if dist.is_available() and dist.is_initialized():
            device = "cuda" if dist.get_backend() == "nccl" else "cpu"
            tensor = torch.tensor([1 if flag else 0], device=device)
            dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
            flag = bool(tensor.item())
        return flag

    def on_step_end(self, args, state, control, **kwargs):
        if self._any_rank_received():
            self.received = self.received or self.signals[0]  # another rank got the signal
            control.should_save = True
            control.should_training_stop = True
            if state.global_step < state.max_steps:
                self.stopped_early_by = self.received

    def on_train_end(self, args, state, control, **kwargs):
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()


class SampleCompletionsCallback(TrainerCallback):
    """Record a few of TRL's latest completions to `sample_completions.jsonl` for the report.

    At the first logged step, every `every` steps and at the end, up to `per_step` rows of
    `{"step", "prompt", "completion", "reward"}` (the weighted total, as TRL computes it) are appended.
    """

    def __init__(self, trainer, path: str | Path, *, weights: dict[str, float], every: int, per_step: int = 8) -> None:
        self.trainer = trainer
        self.path = Path(path)
        self.weights = weights
        self.every = every
        self.per_step = per_step
        self._recorded_steps: set[int] = set()

    def _record(self, step: int) -> None:
        from grpokit.tracking.callback import trl_recent_completions

        if step in self._recorded_steps:
            return
        self._recorded_steps.add(step)
        rows = trl_recent_completions(self.trainer)[: self.per_step]
        with self.path.open("a", encoding="utf-8") as handle:
            for row in rows:
                scores = [(row.get(f"rewards/{name}"), weight) for name, weight in self.weights.items()]
                present = [score * weight for score, weight in scores if score is not None]
                total = sum(present) if present else None
                record = {"step": step, "prompt": row["prompt"], "completion": row["completion"], "reward": total}
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            truncate_jsonl_after(self.path, state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or self.every <= 0 or not logs or "reward" not in logs:
            return
        if not self._recorded_steps or state.global_step % self.every == 0:
            self._record(state.global_step)

    def on_train_end(self, args, state, control, **kwargs):
        if state.is_world_process_zero and self.every > 0 and self._recorded_steps:
            self._record(state.global_step)
