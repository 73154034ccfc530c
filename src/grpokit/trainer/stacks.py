"""Reading Python stacks: every thread's stack as `faulthandler` writes it, and where a thread was, in one line.

The hang watchdog (`grpokit.trainer.watchdog`) dumps every rank's stacks with `dump_all_stacks`, which
works even when the main thread is stuck in native code or holds a lock, and names the place each rank
waited with `describe_where(thread_frames(dump, main_thread_ident))`.
"""

from __future__ import annotations

import faulthandler
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

WHERE_PREFIX = "where: "  # the line of a stack file that says where its main thread was
# Frames from these folders say little about why a rank waits: the report names the first frame outside them too.
GENERIC_CODE = re.compile(r"[/\\](torch|accelerate|threading\.py|python3\.\d+[/\\](?!site-packages))")
FRAME_LINE = re.compile(r'^\s+File "(?P<file>.+)", line (?P<line>\d+) in (?P<function>.+)$')
TRAINING_LOOP = re.compile(r"transformers[/\\]trainer\.py$")  # the main thread is in the training loop
THREAD_HEADER = re.compile(r"^(Current thread|Thread) 0x(?P<ident>[0-9a-fA-F]+) \(most recent call first\):$")


@dataclass(frozen=True)
class Frame:
    file: str
    line: int
    function: str

    def short(self) -> str:
        parts = Path(self.file).parts
        tail = parts[parts.index("site-packages") + 1 :] if "site-packages" in parts else parts[-2:]
        return f"{self.function} ({'/'.join(tail)}:{self.line})"


def thread_frames(dump: str, thread_ident: int) -> list[Frame]:
    """The frames (most recent first) of one thread in a `faulthandler.dump_traceback` text."""
    frames: list[Frame] = []
    inside = False
    for line in dump.splitlines():
        header = THREAD_HEADER.match(line)
        if header:
            inside = int(header.group("ident"), 16) == thread_ident
            continue
        frame = FRAME_LINE.match(line)
        if inside and frame:
            frames.append(Frame(frame.group("file"), int(frame.group("line")), frame.group("function")))
    return frames


def describe_where(frames: list[Frame]) -> str:
    """The innermost frame, and the first one outside torch and the standard library when that differs.

    >>> describe_where([Frame("/x/site-packages/torch/distributed/c10d.py", 9, "all_gather"),
    ...                 Frame("/x/site-packages/trl/trainer/grpo_trainer.py", 5, "_generate")])
    'all_gather (torch/distributed/c10d.py:9), from _generate (trl/trainer/grpo_trainer.py:5)'
    """
    if not frames:
        return "no Python frame (in native code outside the interpreter)"
    where = frames[0].short()
    caller = next((frame for frame in frames if not GENERIC_CODE.search(frame.file)), None)
    return where if caller is None or caller == frames[0] else f"{where}, from {caller.short()}"


def in_training_loop(frames: list[Frame]) -> bool:
    """Whether the main thread is inside transformers' Trainer (a thread with no Python frame counts as inside)."""
    return not frames or any(TRAINING_LOOP.search(frame.file) for frame in frames)


def dump_all_stacks() -> str:
    """Every thread's Python stack as `faulthandler` prints it (safe even when the main thread holds a lock)."""
    with tempfile.TemporaryFile("w+", encoding="utf-8") as handle:
        faulthandler.dump_traceback(handle, all_threads=True)
        handle.flush()
        handle.seek(0)
        return handle.read()


def read_where(path: Path) -> str | None:
    """The `where:` line of a rank's stack file, or None."""
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines()[:5]:
        if line.startswith(WHERE_PREFIX):
            return line[len(WHERE_PREFIX) :]
    return None
