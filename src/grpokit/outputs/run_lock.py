"""One run per output directory.

Two trainings writing one `output_dir` would each append to `metrics.jsonl` (every step twice) and
save their model over the other's. `run_lock(output_dir)` takes an exclusive `flock` on
`output_dir/.grpokit-run.lock` and writes who holds it (pid, host, start time, command); a second
run finds the lock taken and stops with exit code 2, naming the directory and that process.

The kernel drops a `flock` when its process ends, however it ends, so the lock of a run that was
killed (`kill -9`, OOM, a lost spot instance) is free at once: the next run takes it over and says
which process left it. The file is removed when a run ends normally.

In a job of several processes only the main one (RANK 0) holds the lock. `grpokit train --nproc`
takes it in the launching process and tells its ranks through `HELD_BY_LAUNCHER_ENV`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from grpokit.errors import GrpokitError
from grpokit.outputs.files import RUN_LOCK_FILE
from grpokit.outputs.fs_faults import writable_directories

logger = logging.getLogger("grpokit.outputs")

HELD_BY_LAUNCHER_ENV = "GRPOKIT_RUN_LOCK_HELD"  # the resolved output_dir whose lock the launcher holds


class RunLockedError(GrpokitError):
    """Another run holds the output directory. `exit_code` 2."""


@dataclass
class RunLock:
    """A held lock: release it (or let the process end) to free the directory."""

    path: Path
    descriptor: int

    def release(self) -> None:
        if self.descriptor < 0:
            return
        with contextlib.suppress(OSError):
            if os.stat(self.path).st_ino == os.fstat(self.descriptor).st_ino:
                self.path.unlink()  # still ours: no later run has replaced it
        os.close(self.descriptor)  # drops the flock
        self.descriptor = -1


def _holder(descriptor: int) -> dict:
    with contextlib.suppress(OSError, ValueError):
        text = os.pread(descriptor, 65536, 0).decode("utf-8", "replace").strip()
        return json.loads(text) if text else {}
    return {}


def _describe(holder: dict) -> str:
    if not holder:
        return "another process"
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("started", 0)))
    return f"process {holder.get('pid')} on {holder.get('host')} (started {started}: {holder.get('command', '?')})"


def acquire_run_lock(output_dir: str | Path) -> RunLock:
    """Hold `output_dir`'s run lock, or raise `RunLockedError` naming the process that holds it.

    Raises:
        RunLockedError: another live process holds it.
        OSError: the folder cannot be created or written (see `outputs.fs_faults`).
    """
    directory = Path(output_dir)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / RUN_LOCK_FILE
    while True:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(descriptor)
            os.close(descriptor)
            raise RunLockedError(
                f"output_dir {directory} is in use by another run: {_describe(holder)}",
                where=str(directory),
                fix="wait for that run to finish or stop it, or give this run another output_dir",
            ) from None
        with contextlib.suppress(FileNotFoundError):
            if os.stat(path).st_ino == os.fstat(descriptor).st_ino:
                break  # locked the file that is at the path now
        os.close(descriptor)  # the holder ended and removed it meanwhile: lock the new one
    previous = _holder(descriptor)
    if previous.get("pid"):
        logger.warning("taking over %s: its run, %s, ended without releasing it (killed?)", path, _describe(previous))
    record = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(), "command": " ".join(sys.argv)}
    os.ftruncate(descriptor, 0)
    os.pwrite(descriptor, json.dumps(record).encode("utf-8"), 0)
    return RunLock(path=path, descriptor=descriptor)


def _held_elsewhere(output_dir: str | Path) -> bool:
    """True on ranks other than 0, and on ranks whose launcher holds the lock for them."""
    if os.environ.get("RANK", "0") != "0":
        return True
    return os.environ.get(HELD_BY_LAUNCHER_ENV) == str(Path(output_dir).resolve())


@contextlib.contextmanager
def run_lock(output_dir: str | Path) -> Iterator[None]:
    """Hold `output_dir` for the duration of a run (no-op on ranks whose lock is held elsewhere)."""
    if _held_elsewhere(output_dir):
        yield
        return
    lock = acquire_run_lock(output_dir)
    try:
        yield
    finally:
        lock.release()


@contextlib.contextmanager
def run_lock_for_launched_ranks(output_dir: str | Path, checkpoint_dir: str | Path, *, node_rank: int = 0) -> Iterator[None]:
    """Hold `output_dir` in a launcher (torchrun's parent) and tell the ranks it starts that it is held.

    Only machine 0 of a job holds it; the folders are checked writable first (`outputs.fs_faults`).
    """
    if node_rank != 0:
        yield
        return
    with writable_directories(output_dir, checkpoint_dir):  # and the ones the job left empty are removed after it
        lock = acquire_run_lock(output_dir)
        os.environ[HELD_BY_LAUNCHER_ENV] = str(Path(output_dir).resolve())
        try:
            yield
        finally:
            os.environ.pop(HELD_BY_LAUNCHER_ENV, None)
            lock.release()
