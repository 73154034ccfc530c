"""Callbacks that steer the training loop: the progress bar, and the graceful stop on SIGTERM / Ctrl-C.

Both act on what every rank agrees on: the bar is drawn by the main process only, and the stop
decision is all-reduced so every rank stops at the same step and checkpoints together.
"""

from __future__ import annotations

import signal
from typing import Any

from transformers import TrainerCallback


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
