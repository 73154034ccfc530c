"""Callbacks that steer the training loop: the progress bar, and the graceful stop on SIGTERM / Ctrl-C.

Both act on what every rank agrees on: the bar is drawn by the main process only, and the stop
decision is all-reduced so every rank stops at the same step and checkpoints together.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from os import _exit as exit_without_cleanup  # public, documented in os: ends the process at once
from typing import Any

from transformers import TrainerCallback

logger = logging.getLogger("grpokit.trainer")

FORCED_EXIT_GRACE = 5.0  # after the timeout, seconds for the main thread to exit cleanly before the process ends
DUPLICATE_SIGNAL_WINDOW = 1.0  # the same signal again this soon is one stop delivered twice, not a second request


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

    The flag is shared across processes with an all-reduce, so a signal that reaches one rank stops
    every rank at the same step and the checkpoint is written collectively.

    A step that does not end within `timeout` seconds of the signal (the config's `stop_timeout`: a
    generation that runs away, a reward that hangs) does not hold the process past SageMaker's SIGKILL
    (120 s after SIGTERM): the process exits with 128 + the signal, without a checkpoint for that step
    (the last complete one is kept and resumed). A second signal exits at once (a second Ctrl-C as
    KeyboardInterrupt, exit 130).
    `before_forced_exit` callables (the trackers' "ended by a signal") run before either exit.
    """

    def __init__(self, *, timeout: float, signals: tuple[int, ...] | None = None) -> None:
        self.signals = signals if signals is not None else (signal.SIGTERM, signal.SIGINT)
        self.timeout = timeout
        self.received: int | None = None
        # Set, identically on every rank, when the signal ended training before max_steps.
        self.stopped_early_by: int | None = None
        self.before_forced_exit: list[Callable[[int], None]] = []
        self._previous: dict[int, Any] = {}
        self._deadline: threading.Timer | None = None
        self._forced_exit_started = False
        self._received_at = 0.0

    def _handle(self, signum, frame) -> None:
        if self.received is not None:
            repeated = signum == self.received and time.monotonic() - self._received_at < DUPLICATE_SIGNAL_WINDOW
            if repeated and not self._forced_exit_started:
                return  # one stop delivered twice (to the process group and forwarded by a launcher)
            self._exit_now(signum, "stop timeout passed" if self._forced_exit_started else f"signal {signum} again")
        self.received = signum
        self._received_at = time.monotonic()
        logger.warning(
            "signal %d: stopping after this step and saving a checkpoint (a second signal, or %g s without the "
            "step ending, stops at once without one)",
            signum,
            self.timeout,
        )
        self._deadline = threading.Timer(self.timeout, self._deadline_passed, args=(signum,))
        self._deadline.daemon = True
        self._deadline.start()

    def _run_exit_hooks(self, signum: int) -> None:
        if self._forced_exit_started:
            return
        self._forced_exit_started = True
        for hook in self.before_forced_exit:
            try:
                hook(signum)
            except Exception as error:  # noqa: BLE001 -- exiting anyway: say it and go on
                logger.warning("while stopping: %s: %s", type(error).__name__, error)

    def _exit_now(self, signum: int, why: str) -> None:
        """In the main thread: stop at once, without a checkpoint for the current step."""
        self._run_exit_hooks(signum)
        logger.warning("%s: stopping now, without a checkpoint for the current step (the last complete one is kept)", why)
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(128 + signum)  # as a shell reports a process ended by that signal

    def _deadline_passed(self, signum: int) -> None:
        """In the timer thread: the step outlived the timeout. Let the main thread exit, or end the process."""
        logger.error(
            "the current step did not end within %g s of signal %d; exiting without a checkpoint for it "
            "(run the same command again to resume from the last complete checkpoint)",
            self.timeout,
            signum,
        )
        self._run_exit_hooks(signum)
        os.kill(os.getpid(), signum)  # the handler raises in the main thread as soon as Python code runs there
        time.sleep(FORCED_EXIT_GRACE)
        logging.shutdown()
        exit_without_cleanup(128 + signum)  # the main thread is stuck in native code: end the process

    def on_train_begin(self, args, state, control, **kwargs):
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
            if self._deadline is not None:
                self._deadline.cancel()  # the step ended in time: the checkpoint is written as usual
            self.received = self.received or self.signals[0]  # another rank got the signal
            control.should_save = True
            control.should_training_stop = True
            if state.global_step < state.max_steps:
                self.stopped_early_by = self.received

    def on_train_end(self, args, state, control, **kwargs):
        if self._deadline is not None:
            self._deadline.cancel()
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()
