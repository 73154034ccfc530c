"""The `grpokit` command line. It only parses arguments and calls the library.

Exit codes: 0 success, 2 bad input (config, data, paths, usage), 1 failure during a run.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from grpokit.cli.common import ConfigArg, SetOption, console, reporting_errors, setup_logging, stdout
from grpokit.cli.launch import launch_app
from grpokit.formatting import fmt

app = typer.Typer(
    help="GRPO fine-tuning of language models from one YAML file.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
@app.command()
def train(
    config: ConfigArg,
    set_: SetOption = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="More log output.")] = False,
    nproc: Annotated[
        int | None,
        typer.Option(help="Run on N processes of this machine (one per GPU) by starting torchrun.", rich_help_panel="Launch"),
    ] = None,
    nnodes: Annotated[int | None, typer.Option(help="Machines in a multi-node run (with --nproc).", rich_help_panel="Launch")] = None,
    node_rank: Annotated[int | None, typer.Option(help="This machine's rank, 0 on the master.", rich_help_panel="Launch")] = None,
    master_addr: Annotated[str | None, typer.Option(help="Address of the rank-0 machine.", rich_help_panel="Launch")] = None,
    master_port: Annotated[int | None, typer.Option(help="Port on the rank-0 machine.", rich_help_panel="Launch")] = None,
) -> None:
    """Train with GRPO as CONFIG says, and save the model. See docs/distributed.md for several processes."""
    setup_logging(verbose)
    if nproc is not None:
        _train_with_torchrun(
            config, list(set_ or []), nproc, nnodes=nnodes, node_rank=node_rank, master_addr=master_addr, master_port=master_port
        )
    with reporting_errors():
        _train_here(config, list(set_ or []))


def _train_here(config: Path, overrides: list[str]) -> None:
    """Train in this process (one rank of a torchrun job, or the only process)."""
    from grpokit.config import load_config
    from grpokit.launch.container import in_sagemaker, sagemaker_overrides
    from grpokit.outputs.report import write_report
    from grpokit.trainer import train as run_training

    if in_sagemaker():  # channels, SM_MODEL_DIR and /opt/ml/checkpoints replace local paths
        overrides += sagemaker_overrides(load_config(config, overrides).options)
    result = run_training(load_config(config, overrides), console=console)
    if not _is_main_process():
        return
    for name, count in result.reward_failures.items():
        console.print(f"[yellow]warning:[/] reward '{name}' failed on {count} completions (scored 0.0, on_error: zero)")
    report = write_report(result.output_dir).html
    if result.stopped_by_signal is not None:
        console.print(
            f"[yellow]stopped by signal {result.stopped_by_signal} at step {result.global_step}[/]; "
            "the checkpoint is saved: run the same command again to resume"
        )
        raise typer.Exit(128 + result.stopped_by_signal)  # as a shell reports a process ended by that signal
    stdout.print(
        f"trained {result.global_step} steps in {result.train_seconds:.0f} s; model saved to [bold]{result.output_dir}[/]"
    )
    stdout.print(f"report: [bold]{report}[/]")


def _train_with_torchrun(config: Path, overrides: list[str], nproc: int, **rendezvous_options) -> None:
    """Re-run this command under torchrun (minus the launch options) and exit with its exit code.

    The config is checked here first, for the job's number of processes, so a bad config is one
    message and exit code 2 rather than one traceback per rank.
    """
    from grpokit.config import load_config
    from grpokit.launch.torchrun import (
        needs_launcher,
        resolve_rendezvous,
        run_forwarding_signals,
        torchrun_command,
    )

    with reporting_errors():
        rendezvous = resolve_rendezvous(nproc, **rendezvous_options)
        if needs_launcher(rendezvous):
            grpokit_logger = logging.getLogger("grpokit")
            level = grpokit_logger.level
            grpokit_logger.setLevel(logging.ERROR)  # the ranks print the fallback warnings themselves
            try:
                load_config(config, overrides, world_size=rendezvous.nproc_per_node * rendezvous.nnodes)
            finally:
                grpokit_logger.setLevel(level)
    if needs_launcher(rendezvous):
        raise typer.Exit(run_forwarding_signals(torchrun_command(sys.argv[1:], rendezvous)))


@app.command()
def validate(
    config: ConfigArg,
    set_: SetOption = None,
    rows: Annotated[int, typer.Option(help="Dataset rows to run the rewards on.")] = 2,
) -> None:
    """Check CONFIG, the data, the model and the rewards without training."""
    setup_logging()
    with reporting_errors():
        from grpokit.commands.validate import validate as run_validation
        from grpokit.config import load_config

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
            *[fmt(scores.get(name)) for name in report.reward_names],
            fmt(entry["total"]),
        )
    return table


@app.command()
def models() -> None:
    """List the built-in models and where they are."""
    from grpokit.model.builtin import list_builtin_models

    table = Table(title="built-in models")
    for column in ("name", "parameters", "path", "description"):
        table.add_column(column, overflow="fold")  # a path is only useful whole
    for model in list_builtin_models():
        table.add_row(model.name, f"{model.num_parameters:,}", str(model.path), model.description)
    stdout.print(table)


@app.command()
def demo(
    output_dir: Annotated[
        Path, typer.Option(help="Where the model, summary.json and report.html go.")
    ] = Path("outputs/demo"),
    config: Annotated[
        Path | None, typer.Option(help="Another demo config (default: the settings of examples/demo.yaml).")
    ] = None,
    set_: SetOption = None,
) -> None:
    """Teach the built-in tiny model 2-digit addition with GRPO; show held-out accuracy before and after."""
    setup_logging()
    with reporting_errors():
        from grpokit.commands.demo import run_demo, summary_table

        result = run_demo(output_dir, config_path=config, overrides=set_ or [], console=console)
        stdout.print(summary_table(result))


@app.command()
def report(
    output_dir: Annotated[Path, typer.Argument(help="The output_dir of a finished or running training.")],
) -> None:
    """Write OUTPUT_DIR/report.html: curves, per-reward statistics, sample completions and the config."""
    with reporting_errors():
        from grpokit.outputs.report import write_report

        stdout.print(f"report: [bold]{write_report(output_dir).html}[/]")


@app.command()
def keys(
    trl: Annotated[bool, typer.Option("--trl", help="Also list every TRL GRPOConfig field, with type and default.")] = False,
    markdown: Annotated[bool, typer.Option("--markdown", help="Print the reference as Markdown (docs/config.md).")] = False,
) -> None:
    """List the config keys: grpokit's own, and with --trl the TRL fields that pass through."""
    from grpokit.config import config_reference_markdown, options_reference, trl_reference

    if markdown:
        print(config_reference_markdown(), end="")
        return
    table = Table(title="grpokit config keys")
    for column in ("key", "type", "default", "meaning"):
        table.add_column(column, overflow="fold")
    for row in options_reference():
        table.add_row(*row)
    stdout.print(table)
    if trl:
        trl_table = Table(title="TRL GRPOConfig / TrainingArguments fields (passed through)")
        for column in ("key", "type", "default"):
            trl_table.add_column(column, overflow="fold")
        for row in trl_reference():
            trl_table.add_row(*row)
        stdout.print(trl_table)


@app.command()
def rewards(
    config: ConfigArg,
    set_: SetOption = None,
    rows: Annotated[int | None, typer.Option(help="Dataset rows to score (default 4 with --generate; with --completions, the file's rows).")] = None,
    completions: Annotated[
        Path | None,
        typer.Option(help='JSON Lines of completions: a string or chat message list per line, or {"completion": ..., "row": N}.'),
    ] = None,
    generate: Annotated[bool, typer.Option("--generate", help="Generate the completions with the config's model.")] = False,
    num_samples: Annotated[int, typer.Option(help="With --generate: completions per row (1: greedy).")] = 1,
    split: Annotated[str, typer.Option(help="Dataset split: train or test.")] = "train",
) -> None:
    """Run every configured reward on a few rows and print each score and the weighted total."""
    setup_logging()
    with reporting_errors():
        from grpokit.commands.rewards import debug_rewards, scores_table
        from grpokit.config import load_config

        report = debug_rewards(
            load_config(config, set_ or []),
            rows=rows,
            completions_file=completions,
            generate=generate,
            num_samples=num_samples,
            split=_split_name(split),
        )
        stdout.print(scores_table(report))


@app.command(name="eval")
def eval_(
    config: ConfigArg,
    model: Annotated[str, typer.Option(help="Model to evaluate: an output dir (adapter or full model), a Hugging Face id or builtin:tiny.")],
    set_: SetOption = None,
    split: Annotated[str, typer.Option(help="Dataset split: test (test_dataset_path) or train.")] = "test",
    num_samples: Annotated[int, typer.Option(help="Completions per prompt: 1 is greedy; K > 1 samples K (pass@K).")] = 1,
    rows: Annotated[int | None, typer.Option(help="Evaluate only the first N rows.")] = None,
    output: Annotated[Path | None, typer.Option(help="Where eval.json and eval_samples.jsonl go (default: <model>/eval/).")] = None,
    compare: Annotated[str | None, typer.Option(help="A base model to score the same way; shows the difference per reward.")] = None,
    reference_column: Annotated[str, typer.Option(help="Column with the reference answer, for accuracy.")] = "answer",
) -> None:
    """Generate completions for a dataset split with MODEL, score them with the configured rewards."""
    setup_logging()
    with reporting_errors():
        from grpokit.commands.evaluate import EvalOptions, eval_table, run_eval
        from grpokit.config import load_config

        options = EvalOptions(
            split=_split_name(split), num_samples=num_samples, max_rows=rows, reference_column=reference_column
        )
        report = run_eval(load_config(config, set_ or []), model, options, output_dir=output, compare=compare)
        stdout.print(eval_table(report))
        stdout.print(f"wrote [bold]{report.eval_path}[/] and {report.samples_path.name}")


def _split_name(split: str) -> str:
    if split not in ("train", "test"):
        raise typer.BadParameter(f"--split must be train or test, got {split!r}")
    return split


def _is_main_process() -> bool:
    return os.environ.get("RANK", "0") == "0"


def main() -> None:
    """Console-script entry point."""
    app()


app.add_typer(launch_app, name="launch")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
