"""The `grpokit` command line. It only parses arguments and calls the library.

Exit codes: 0 success, 2 bad input (config, data, paths, usage), 1 failure during a run.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Iterator

import typer
from rich.console import Console
from rich.table import Table

from grpokit.errors import GrpokitError

app = typer.Typer(
    help="GRPO fine-tuning of language models from one YAML file.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)
stdout = Console()

ConfigArg = Annotated[Path, typer.Argument(help="The YAML config file.", show_default=False)]
SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a config key: --set learning_rate=1e-5 (repeatable; dotted keys for sections)."),
]


def setup_logging(verbose: bool = False) -> None:
    """grpokit's own messages at INFO through rich; the libraries' chatter only when it matters."""
    from rich.logging import RichHandler

    handler = RichHandler(console=console, show_time=False, show_path=False, markup=False)
    logging.basicConfig(level=logging.WARNING, handlers=[handler], format="%(message)s", force=True)
    logging.getLogger("grpokit").setLevel(logging.DEBUG if verbose else logging.INFO)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    with contextlib.suppress(ImportError):
        import transformers

        transformers.logging.set_verbosity_error()


@contextlib.contextmanager
def reporting_errors() -> Iterator[None]:
    """Turn a `GrpokitError` into one clear message and its exit code; no traceback."""
    try:
        yield
    except GrpokitError as error:
        console.print(f"[bold red]error:[/] {error.message}", highlight=False)
        raise typer.Exit(error.exit_code) from None
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]")
        raise typer.Exit(130) from None


@app.command()
def train(
    config: ConfigArg,
    set_: SetOption = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="More log output.")] = False,
) -> None:
    """Train with GRPO as CONFIG says, and save the model."""
    setup_logging(verbose)
    with reporting_errors():
        from grpokit.config import load_config
        from grpokit.trainer import train as run_training

        run_config = load_config(config, set_ or [])
        result = run_training(run_config, console=console)
        if _is_main_process():
            stdout.print(
                f"trained {result.global_step} steps in {result.train_seconds:.0f} s; "
                f"model saved to [bold]{result.output_dir}[/]"
            )


@app.command()
def validate(
    config: ConfigArg,
    set_: SetOption = None,
    rows: Annotated[int, typer.Option(help="Dataset rows to run the rewards on.")] = 2,
) -> None:
    """Check CONFIG, the data, the model and the rewards without training."""
    setup_logging()
    with reporting_errors():
        from grpokit.config import load_config
        from grpokit.validate import validate as run_validation

        report = run_validation(load_config(config, set_ or []), rows=rows)
        stdout.print(f"[green]config ok[/]: {config}")
        stdout.print(f"[green]data ok[/]: {report.data_description}")
        stdout.print(
            f"[green]model ok[/]: {report.model.source} ({report.model.model_type}, {report.model.num_parameters_hint}"
            f"{', chat template' if report.model.has_chat_template else ', no chat template'})"
        )
        stdout.print(_reward_table(report))


def _reward_table(report) -> Table:
    table = Table(title="rewards on sample rows (dummy completions)")
    table.add_column("row")
    table.add_column("completion")
    for name, weight in zip(report.reward_names, report.reward_weights):
        table.add_column(f"{name} (x{weight:g})", justify="right")
    table.add_column("total", justify="right")
    for entry in report.reward_rows:
        scores = entry["scores"]
        table.add_row(
            str(entry["row"]),
            repr(entry["completion"])[:40],
            *[_fmt(scores.get(name)) for name in report.reward_names],
            _fmt(entry["total"]),
        )
    return table


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.3f}"


@app.command()
def models() -> None:
    """List the built-in models and where they are."""
    from grpokit.builtin_models import list_builtin_models

    table = Table(title="built-in models")
    for column in ("name", "parameters", "path", "description"):
        table.add_column(column)
    for model in list_builtin_models():
        table.add_row(model.name, f"{model.num_parameters:,}", str(model.path), model.description)
    stdout.print(table)


def _is_main_process() -> bool:
    return os.environ.get("RANK", "0") == "0"


def main() -> None:
    """Console-script entry point."""
    app()


from grpokit.launch.cli import launch_app  # noqa: E402  (it imports the helpers above)

app.add_typer(launch_app, name="launch")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
