"""What every `grpokit` command shares: the consoles, the common arguments, logging, and error reporting."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from grpokit.cli.log_format import LEVELS, console_width, log_handler
from grpokit.errors import GrpokitError
from grpokit.secrets import MaskingFilter, mask_text

console = Console(stderr=True, soft_wrap=True, width=console_width(sys.stderr))  # messages stay whole lines, grep-able in logs
stdout = Console(soft_wrap=True, width=console_width(sys.stdout))

ConfigArg = Annotated[Path, typer.Argument(help="The YAML config file.", show_default=False)]
SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a config key: --set learning_rate=1e-5 (repeatable; dotted keys for sections)."),
]


VerboseOption = Annotated[bool, typer.Option("--verbose", "-v", help="More log output: grpokit's debug lines, transformers' warnings.")]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="Warnings, errors and the final result only.")]


def setup_logging(verbose: bool = False, quiet: bool = False) -> None:
    """grpokit's own messages at INFO; the libraries' chatter only when it matters (`cli.log_format`).

    On a terminal through rich; to a pipe or a file, one plain record per line without progress bars.
    """
    verbosity = "verbose" if verbose else "quiet" if quiet else "default"
    handler = log_handler(console)
    handler.addFilter(MaskingFilter())  # no secret reaches a log line
    logging.basicConfig(level=logging.WARNING, handlers=[handler], format="%(message)s", force=True)
    logging.getLogger("grpokit").setLevel(LEVELS[verbosity])
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # transformers 5 renames gradient_checkpointing; TRL still uses the old name. Not the user's to fix.
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"transformers\.")
    # transformers reads this when it is imported; importing it here (2 s) would delay every error report
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "warning" if verbose else "error")
    if "transformers" in sys.modules:
        sys.modules["transformers"].logging.set_verbosity(logging.WARNING if verbose else logging.ERROR)
    # DeepSpeed (installed with the dev extra) logs through its own handler, on import, that it fell back
    # to the CPU; grpokit says what the run uses. The logger object outlives DeepSpeed's set-up of it.
    deepspeed_logger = logging.getLogger("DeepSpeed")
    if not any(isinstance(f, _NotTheCpuFallbackLine) for f in deepspeed_logger.filters):
        deepspeed_logger.addFilter(_NotTheCpuFallbackLine())
    # PEFT imports bitsandbytes whenever it is installed, and bitsandbytes then advises `pip install kernels`
    # (a Hub download) on some CPUs, in every run, quantized or not: the same filter as for QLoRA runs.
    from grpokit.config.bitsandbytes_check import quiet_bitsandbytes

    quiet_bitsandbytes()


class _NotTheCpuFallbackLine(logging.Filter):
    """Drops DeepSpeed's "Setting accelerator to CPU" line unless grpokit logs at debug level (--verbose)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if logging.getLogger("grpokit").level <= logging.DEBUG:
            return True
        return not record.getMessage().startswith("Setting accelerator to CPU")


def lighter_interpreter_exit() -> None:
    """Make the interpreter's exit cheap: 1.5 s for every command that imported torch, transformers and TRL, 0.6 s
    with this (its own collection and flush included; measured on 2 CPU cores).

    At exit, after every exit handler registered later than this one (trackers, loggers, ...: what they
    close is closed as before), the garbage is collected once, every file object still open is flushed,
    then what is left is frozen (`gc.freeze`), so the shutdown's own collections skip the millions of
    objects those imports made. A file held by an object in a reference cycle that is still reachable at
    exit would otherwise lose its unwritten buffer (the shutdown no longer collects it); flushing first
    keeps it, as a normal exit does.
    """
    import atexit

    atexit.register(_collect_flush_freeze)


def _collect_flush_freeze() -> None:
    import gc
    import io

    gc.collect()
    is_file: dict[type, bool] = {}  # by type: `isinstance` would call `__class__`, which some objects warn about
    for thing in gc.get_objects():
        kind = type(thing)
        if is_file.get(kind) is None:
            is_file[kind] = issubclass(kind, io.IOBase)
        if is_file[kind]:
            with contextlib.suppress(Exception):  # a closed pipe or a broken stream: nothing more to keep
                if not thing.closed:
                    thing.flush()
    gc.freeze()


@contextlib.contextmanager
def reporting_errors() -> Iterator[None]:
    """Turn a `GrpokitError` into one clear message and its exit code; no traceback.

    A filesystem fault from any command (a full disk, a read-only folder, a file where a folder should
    be) is reported the same way (`outputs.fs_faults`); every other exception keeps its traceback.
    """
    try:
        yield
    except GrpokitError as error:
        _report(error)
    except OSError as error:
        from grpokit.outputs.fs_faults import filesystem_fault

        fault = filesystem_fault(error)
        if fault is None:
            raise
        _report(fault)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]")
        raise typer.Exit(130) from None


def _report(error: GrpokitError) -> None:
    from grpokit.launch.container import write_failure

    message = mask_text(error.message)  # no secret reaches an error message
    write_failure(message)  # shown by DescribeTrainingJob; does nothing outside SageMaker
    console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)  # `grpokit[liger]` is text, not markup
    raise typer.Exit(error.exit_code) from None
