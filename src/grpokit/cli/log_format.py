"""Log lines a job can keep: one record per line when the output is not a terminal, each warning once.

On a terminal, grpokit logs through rich (colours, progress bars). When stderr is a pipe or a file
(SageMaker's CloudWatch, CI, `| tee`), a log stream is read line by line, so:

- each record is one line, `2025-01-31 12:00:00 INFO grpokit.data: message`, never wrapped at 80
  columns, with any newline inside the message (a library's multi-line warning, a traceback) folded
  into ` | `;
- Python warnings (`warnings.warn`) go through the same handler, one line each;
- the Hugging Face progress bars (transformers' "Loading weights" / "Writing model shards", the Hub's
  downloads, datasets' map bars) are off: they draw with carriage returns; grpokit logs one line per
  phase instead, and the training progress as one line per log (`grpokit.trainer.callbacks`);
- wide tables are not folded at 80 columns (`console_width`).

On both, a warning that the config stage logs (the CPU fallbacks) is shown once per command, however
many times the config is loaded (`OncePerCommand`).

Verbosity: `quiet` shows warnings and errors only, the default shows grpokit's INFO lines and the
libraries' warnings (transformers' errors only), `verbose` adds grpokit's DEBUG lines and transformers'
warnings.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TextIO

PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
PLAIN_DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
WIDE_CONSOLE = 200  # columns for tables written to a pipe or a file (rich assumes 80 there)
ONCE_LOGGERS = ("grpokit.config",)  # loggers whose repeated lines are the same fact said again
PROGRESS_BAR_SWITCHES = ("HF_HUB_DISABLE_PROGRESS_BARS", "HF_DATASETS_DISABLE_PROGRESS_BARS")
LEVELS = {"quiet": logging.WARNING, "default": logging.INFO, "verbose": logging.DEBUG}


def is_terminal(stream: TextIO | None) -> bool:
    """Whether `stream` is an interactive terminal (a pipe, a file or a closed stream is not)."""
    try:
        return bool(stream is not None and stream.isatty())
    except (ValueError, AttributeError):  # closed, or a stand-in without isatty
        return False


def console_width(stream: TextIO | None) -> int | None:
    """The width to draw tables at: the terminal's (None: rich measures it), or `WIDE_CONSOLE` for a pipe or a file."""
    return None if is_terminal(stream) else WIDE_CONSOLE


def one_line(text: str) -> str:
    """`text` with its line breaks folded into ` | ` and carriage returns dropped.

    >>> one_line("first\\n  second\\r\\n")
    'first | second'
    """
    parts = [part.strip() for part in text.replace("\r", "\n").split("\n")]
    return " | ".join(part for part in parts if part)


class OneLineFormatter(logging.Formatter):
    """`time LEVEL logger: message`, the message and any traceback on the same line."""

    def __init__(self) -> None:
        super().__init__(PLAIN_FORMAT, datefmt=PLAIN_DATE_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        return one_line(super().format(record))


class OncePerCommand(logging.Filter):
    """Lets through the first record of each (logger, message) of `ONCE_LOGGERS`; drops the repeats."""

    def __init__(self) -> None:
        super().__init__()
        self._seen: set[tuple[str, str]] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(ONCE_LOGGERS):
            return True
        key = (record.name, record.getMessage())
        if key in self._seen:
            return False
        self._seen.add(key)
        return True


class CurrentStderrHandler(logging.StreamHandler):
    """A StreamHandler that writes to whatever `sys.stderr` is when a record comes.

    Bound to the stream of the moment it was made, it would outlive a swapped stderr (a test runner's,
    closed after the command) and fail on every later record.
    """

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass  # always the current sys.stderr


def plain_handler() -> logging.Handler:
    """The handler for a log stream that is not a terminal: one record per line, to the current stderr."""
    handler = CurrentStderrHandler()
    handler.setFormatter(OneLineFormatter())
    return handler


def rich_handler(console) -> logging.Handler:
    """The handler for a terminal: rich's, without time or path columns, markup off (messages hold brackets)."""
    from rich.logging import RichHandler

    return RichHandler(console=console, show_time=False, show_path=False, markup=False)


def turn_off_progress_bars() -> None:
    """No carriage-return bars from the Hugging Face libraries, whether they are imported yet or not."""
    for name in PROGRESS_BAR_SWITCHES:
        os.environ[name] = "1"  # read when the libraries are imported (and by the ranks a launcher starts)
    if "transformers" in sys.modules:
        sys.modules["transformers"].utils.logging.disable_progress_bar()
    if "huggingface_hub" in sys.modules:
        sys.modules["huggingface_hub"].utils.disable_progress_bars()
    if "datasets" in sys.modules:
        sys.modules["datasets"].utils.logging.disable_progress_bar()


def log_handler(console) -> logging.Handler:
    """The one handler every logger writes through, fitted to where `console` writes."""
    if is_terminal(console.file):
        handler = rich_handler(console)
    else:
        handler = plain_handler()  # the log console is stderr's
        turn_off_progress_bars()
        logging.captureWarnings(True)  # warnings.warn -> the py.warnings logger -> one line
    handler.addFilter(OncePerCommand())
    return handler
