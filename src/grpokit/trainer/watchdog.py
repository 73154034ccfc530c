"""The hang watchdog: when no training step completes in time, every rank dumps its Python stacks and the run stops.

A rank that waits forever (a collective whose peer is stuck, an NCCL or weight-sync hang, a reward
server that never answers) looks alive: the process runs, the GPU stays allocated, nothing happens.
`HangWatchdog` is a daemon thread on every rank, fed by the training loop's callbacks (step begin and
end, log, save, evaluation batches). When its allowance passes with no progress:

1. the rank writes every thread's Python stack (`faulthandler`) to `hang_stacks/rank-<N>.txt` in
   output_dir, headed by where its main thread was;
2. rank 0 waits up to `PEER_WAIT_S` for the other ranks' files, logs one message saying where each
   rank was, records a `hang` event in `health.jsonl` and, inside SageMaker, the failure reason;
3. with `action: stop` (the default) the process exits at once with code 4 (`RunHung`): its main
   thread is stuck, so nothing else can run on it. A retry resumes from the last periodic checkpoint.
   With `action: warn` it logs, keeps waiting, and dumps again after another allowance.

The allowance is `timeout_s` when set; otherwise `step_time_factor` x the slowest step seen so far, at
least `min_timeout_s`. Until a step of this (re)start has completed, and while a checkpoint is written
or an evaluation runs, `first_step_timeout_s` applies instead: warm-up, saving and evaluating take
longer than a step.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Callable
from os import _exit as exit_immediately  # public (documented) in Python 3.11: exit without cleanup
from pathlib import Path

from transformers import TrainerCallback

from grpokit.config.health import HangOptions
from grpokit.errors import RunHung
from grpokit.outputs.files import HANG_STACK_FILE_FORMAT, HANG_STACKS_DIR, HEALTH_FILE, atomic_write_text
from grpokit.outputs.health_events import (
    TRIPPED,
    WARNED,
    HealthEvent,
    append_health_event,
    read_health_events,
)
from grpokit.trainer.stacks import (
    WHERE_PREFIX,
    Frame,
    describe_where,
    dump_all_stacks,
    in_training_loop,
    read_where,
    thread_frames,
)

logger = logging.getLogger("grpokit.watchdog")

PEER_WAIT_S = 30.0  # how long rank 0 waits for the other ranks' stack files before it reports
REPORT_GRACE_S = 10.0  # and the other ranks wait this much longer for its report before they exit


def stack_file(output_dir: Path, rank: int) -> Path:
    return Path(output_dir) / HANG_STACKS_DIR / HANG_STACK_FILE_FORMAT.format(rank=rank)


class HangWatchdog:
    """The watchdog thread of one rank. `beat()` says training moved; `check()` fires when it has not.

    `clock` and `exit_process` are injectable so the logic is testable without waiting or exiting.
    """

    def __init__(
        self,
        options: HangOptions,
        output_dir: str | Path,
        *,
        rank: int = 0,
        world_size: int = 1,
        clock: Callable[[], float] = time.monotonic,
        exit_process: Callable[[int], object] = exit_immediately,
        peer_wait_s: float = PEER_WAIT_S,
        in_training: Callable[[list[Frame]], bool] | None = None,
    ) -> None:
        self.options = options
        self.output_dir = Path(output_dir)
        self.rank, self.world_size = rank, world_size
        self.clock, self.exit_process, self.peer_wait_s = clock, exit_process, peer_wait_s
        self.in_training = in_training or in_training_loop
        self.slowest_step: float | None = None
        self.step = 0
        self.phase = "starting training"
        self._lock = threading.Lock()
        self._last_progress = clock()
        self._last_progress_wall = time.time()
        self._long_allowance = True  # until a step completes
        self._step_started: float | None = None
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ fed by the training loop

    def allowance(self) -> float:
        """Seconds of no progress the watchdog accepts in the current phase."""
        options = self.options
        if self._long_allowance or self.slowest_step is None:
            return max(options.first_step_timeout_s, options.timeout_s or 0.0)
        if options.timeout_s is not None:
            return options.timeout_s
        return max(options.min_timeout_s, options.step_time_factor * self.slowest_step)

    def beat(self, phase: str, *, long_allowance: bool | None = None) -> None:
        with self._lock:
            self._last_progress, self._last_progress_wall = self.clock(), time.time()
            self.phase = phase
            if long_allowance is not None:
                self._long_allowance = long_allowance

    def step_begin(self, step: int) -> None:
        self.step = step
        self._step_started = self.clock()
        self.beat(f"in step {step + 1}", long_allowance=self.slowest_step is None)

    def step_end(self, step: int, *, saving_or_evaluating: bool) -> None:
        if self._step_started is not None:
            duration = self.clock() - self._step_started
            self.slowest_step = duration if self.slowest_step is None else max(self.slowest_step, duration)
        self.step = step
        phase = "saving or evaluating" if saving_or_evaluating else "logging"
        self.beat(f"after step {step} ({phase})", long_allowance=saving_or_evaluating)

    # ------------------------------------------------------------------ the thread

    def start(self) -> None:
        """Start the thread; a watchdog left by an earlier training in this process (one that raised) stops first."""
        global _running
        if self.options.action == "off" or self._thread is not None:
            return
        with _running_lock:
            if _running is not None and _running is not self:
                _running.stop()
            _running = self
        self.beat(self.phase)
        self._thread = threading.Thread(target=self._run, name="grpokit-hang-watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self._thread = None

    def _run(self) -> None:
        while not self._stopped.wait(timeout=min(max(self.seconds_left(), 0.05), 1.0)):
            if not self.check() and self.peer_fired():
                self.fire()

    def seconds_left(self) -> float:
        with self._lock:
            return self._last_progress + self.allowance() - self.clock()

    def peer_fired(self) -> bool:
        """On rank 0: another rank has dumped its stacks since this rank's last progress (it waits on that rank too)."""
        if self.rank != 0 or self.world_size == 1:
            return False
        folder = self.output_dir / HANG_STACKS_DIR
        with self._lock:
            since = self._last_progress_wall
        if not folder.is_dir() or folder.stat().st_mtime < since:  # one stat a second while nothing happens
            return False
        return any(stack_file(self.output_dir, rank).is_file() and stack_file(self.output_dir, rank).stat().st_mtime >= since
                   for rank in range(1, self.world_size))

    def check(self) -> bool:
        """Fire if the allowance has passed with no progress. Returns True when it fired."""
        if self.seconds_left() > 0 or self._stopped.is_set():
            return False
        self.fire()
        return True

    def fire(self) -> None:
        with self._lock:
            idle, allowance, phase, since = self.clock() - self._last_progress, self.allowance(), self.phase, self._last_progress_wall
        dump = dump_all_stacks()
        frames = thread_frames(dump, threading.main_thread().ident or 0)
        if not self.in_training(frames):
            self._stopped.set()  # training has left the loop (it raised, or ended without on_train_end): nothing hangs
            return
        where = describe_where(frames)
        header = (
            f"grpokit hang watchdog: rank {self.rank} of {self.world_size}, host {socket.gethostname()}, pid {os.getpid()}\n"
            f"no progress for {idle:.0f} s (allowance {allowance:.0f} s), {phase}\n{WHERE_PREFIX}{where}\n\n"
        )
        path = stack_file(self.output_dir, self.rank)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, header + dump)
        stopping = self.options.action == "stop"
        if self.rank == 0:
            self._report(idle, allowance, phase, since, stopping)
        else:
            logger.error("rank %d: no training step completed in %.0f s, %s; it was in %s (stacks: %s)", self.rank, idle, phase, where, path)
            if stopping:
                self._wait_for_rank_0(since)
        if stopping:
            _flush_output()
            self.exit_process(RunHung.exit_code)
            self._stopped.set()  # reached only when exit_process returns (tests)
        else:
            self.beat(phase)  # warn again only after another allowance

    def _report(self, idle: float, allowance: float, phase: str, since: float, stopping: bool) -> None:
        places = self._where_every_rank(since)
        stacks_dir = self.output_dir / HANG_STACKS_DIR
        message = (
            f"hang: no training step completed in {idle:.0f} s (allowance {allowance:.0f} s, {self._allowance_reason()}), "
            f"{phase}. " + "; ".join(f"rank {rank} was in {where}" for rank, where in places) + f". Stacks: {stacks_dir}/"
        )
        fix = (
            "the run was stopped (exit 4): run the same command again to resume from the last checkpoint; if it hangs "
            "again at the same place, the stacks show what each rank waits for"
            if stopping
            else "training continues; set health.hang.action: stop to stop such a run"
        )
        append_health_event(
            self.output_dir / HEALTH_FILE,
            HealthEvent(
                step=self.step,
                check="hang",
                status=TRIPPED if stopping else WARNED,
                message=message,
                value=idle,
                exit_code=RunHung.exit_code if stopping else None,
            ),
        )
        logger.error("%s\n  fix:   %s", message, fix)
        if stopping:
            from grpokit.launch.container import write_failure

            write_failure(f"{message}\n  fix:   {fix}")
            self._write_report()

    def _write_report(self) -> None:
        """The report with the hang in its health section: the main thread, which writes it otherwise, is stuck."""
        from grpokit.outputs.report import write_report

        try:
            logger.info("report: %s", write_report(self.output_dir).html)
        except Exception as error:  # noqa: BLE001 - the report must not stop the exit; the error is said
            logger.error("the report could not be written (%s: %s); `grpokit report %s` writes it", type(error).__name__, error, self.output_dir)

    def _wait_for_rank_0(self, since: float) -> None:
        """Let rank 0 report (it waits for this rank's file) before this rank exits: its peers fail once it is gone."""
        deadline = time.monotonic() + self.peer_wait_s + REPORT_GRACE_S
        while time.monotonic() < deadline:
            if any(e.check == "hang" and e.time >= since - 1.0 for e in read_health_events(self.output_dir / HEALTH_FILE)):
                return
            time.sleep(0.2)

    def _allowance_reason(self) -> str:
        if self._long_allowance or self.slowest_step is None:
            return "health.hang.first_step_timeout_s"
        if self.options.timeout_s is not None:
            return "health.hang.timeout_s"
        return f"{self.options.step_time_factor:g} x the slowest step, {self.slowest_step:.1f} s, at least {self.options.min_timeout_s:g} s"

    def _where_every_rank(self, since: float) -> list[tuple[int, str]]:
        """(rank, where) for every rank, from the stack files written since the stall began."""
        deadline = time.monotonic() + (self.peer_wait_s if self.world_size > 1 else 0.0)
        while True:
            found = {}
            for rank in range(self.world_size):
                path = stack_file(self.output_dir, rank)
                if path.is_file() and path.stat().st_mtime >= since - 1.0:
                    found[rank] = read_where(path) or "an unknown place"
            if len(found) == self.world_size or time.monotonic() >= deadline:
                break
            time.sleep(0.2)
        return [(rank, found.get(rank, "an unknown place (no stack file here: another machine, or it died)")) for rank in range(self.world_size)]


_running: HangWatchdog | None = None  # one training at a time per process
_running_lock = threading.Lock()


def _flush_output() -> None:
    for handler in logging.getLogger().handlers + logging.getLogger("grpokit").handlers:
        handler.flush()
    sys.stdout.flush()
    sys.stderr.flush()


class HangWatchdogCallback(TrainerCallback):
    """Feeds a `HangWatchdog` from the training loop; one per rank. Place it last, after the callbacks that
    decide whether this step saves or evaluates."""

    def __init__(self, options: HangOptions, output_dir: str | Path) -> None:
        self.options = options
        self.output_dir = Path(output_dir)
        self.watchdog: HangWatchdog | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        if self.options.action == "off":
            return
        self.watchdog = HangWatchdog(self.options, self.output_dir, rank=args.process_index, world_size=args.world_size)
        self.watchdog.step = state.global_step
        self.watchdog.start()

    def on_step_begin(self, args, state, control, **kwargs):
        if self.watchdog is not None:
            self.watchdog.step_begin(state.global_step)

    def on_step_end(self, args, state, control, **kwargs):
        if self.watchdog is not None:
            self.watchdog.step_end(state.global_step, saving_or_evaluating=control.should_save or control.should_evaluate)

    def on_prediction_step(self, args, state, control, **kwargs):
        if self.watchdog is not None:
            self.watchdog.beat(f"evaluating after step {state.global_step}", long_allowance=True)

    def on_log(self, args, state, control, **kwargs):
        if self.watchdog is not None:
            self.watchdog.beat(self.watchdog.phase)

    def on_evaluate(self, args, state, control, **kwargs):
        if self.watchdog is not None:
            self.watchdog.beat(f"after evaluating at step {state.global_step}")

    def on_save(self, args, state, control, **kwargs):
        if self.watchdog is not None:
            self.watchdog.beat(f"after saving checkpoint-{state.global_step}", long_allowance=False)

    def on_train_end(self, args, state, control, **kwargs):
        if self.watchdog is not None:
            self.watchdog.stop()
            self.watchdog = None
