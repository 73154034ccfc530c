"""Callbacks that steer the training loop: the progress bar, the last step's log, and the graceful stop on SIGTERM / Ctrl-C.

Both act on what every rank agrees on: the bar is drawn by the main process only, and the stop
decision is all-reduced so every rank stops at the same step and checkpoints together.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import threading
import time
from collections.abc import Callable
from os import _exit as exit_without_cleanup  # public, documented in os: ends the process at once
from typing import Any

from transformers import TrainerCallback

from grpokit.formatting import duration

logger = logging.getLogger("grpokit.trainer")

FORCED_EXIT_GRACE = 5.0  # after the timeout, seconds for the main thread to exit cleanly before the process ends
DUPLICATE_SIGNAL_WINDOW = 1.0  # the same signal again this soon is one stop delivered twice, not a second request


PROGRESS_LINE_SECONDS = 10.0  # without a terminal: at most one progress line per log this often (the last always)
UNLOGGED_PROGRESS_SECONDS = 30.0  # and one at a step that is not logged when none came for this long


class RichProgressCallback(TrainerCallback):
    """The training progress with the latest reward and loss, on the main process only.

    On a terminal, a rich progress bar. To a pipe or a file (a job's log), where a bar's carriage
    returns are noise, one log line per training log instead, at most every `PROGRESS_LINE_SECONDS`:
    `step 40/120 (33%), reward 0.412, loss 0.003, 12 s elapsed, about 24 s left`.
    """

    def __init__(self, console=None) -> None:
        self.console = console
        self._progress = None
        self._task = None
        self._lines = False  # one log line per log instead of a bar
        self._started = 0.0
        self._first_step = 0
        self._last_line = -math.inf

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        from rich.console import Console

        console = self.console or Console(stderr=True)
        if not console.is_terminal:
            self._lines, self._started, self._first_step = True, time.monotonic(), state.global_step
            self._last_line = self._started
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
            console=console,
            transient=False,
        )
        self._progress.start()
        self._task = self._progress.add_task("train", total=state.max_steps, completed=state.global_step, status="")

    def on_step_end(self, args, state, control, **kwargs):
        if self._progress is not None:
            self._progress.update(self._task, completed=state.global_step)
        if self._lines and not control.should_log and time.monotonic() - self._last_line >= UNLOGGED_PROGRESS_SECONDS:
            self._line(state, [])  # steps that are not logged (logging_steps > 1) still show the run moving

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or "train_runtime" in logs:
            return
        parts = [f"{key} {logs[key]:.3f}" for key in ("reward", "loss") if isinstance(logs.get(key), (int, float))]
        if self._lines and parts and (time.monotonic() - self._last_line >= PROGRESS_LINE_SECONDS or state.global_step >= state.max_steps):
            self._line(state, parts)
        if self._progress is not None and parts:
            self._progress.update(self._task, status=" ".join(parts))

    def _line(self, state, parts: list[str]) -> None:
        now = time.monotonic()
        self._last_line = now
        logger.info("%s", progress_line(state.global_step, state.max_steps, parts, now - self._started, self._first_step))

    def on_train_end(self, args, state, control, **kwargs):
        if self._progress is not None:
            self._progress.update(self._task, completed=state.global_step)
            self._progress.stop()
            self._progress = None


def progress_line(step: int, total: int, parts: list[str], elapsed: float, first_step: int = 0) -> str:
    """One line of training progress; the time left is projected from this run's steps so far.

    >>> progress_line(40, 120, ["reward 0.412"], 12.0)
    'step 40/120 (33%), reward 0.412, 12 s elapsed, about 24 s left'
    """
    done = step - first_step
    left = elapsed / done * (total - step) if done > 0 and total > step else 0.0
    share = f" ({step / total:.0%})" if total > 0 else ""
    return ", ".join([f"step {step}/{total}{share}", *parts, f"{duration(elapsed)} elapsed", f"about {duration(left)} left"])


class LastStepLogCallback(TrainerCallback):
    """Log the run's last step, whatever `logging_steps` says, so every run that trained has its metrics.

    transformers logs a step only when it is a multiple of `logging_steps`: a 6-step run with the AWS
    sample's `logging_steps: 10` logged nothing (no metrics.jsonl, no report, no health figures). Place it
    after the callbacks that stop training early (the graceful stop), so a stopped run's last step is
    logged too.
    """

    def on_step_end(self, args, state, control, **kwargs):
        last = state.max_steps > 0 and state.global_step >= state.max_steps
        if (last or control.should_training_stop) and str(args.logging_strategy).split(".")[-1].lower() != "no":
            control.should_log = True


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
