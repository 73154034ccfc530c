"""The `grpokit` command line. It only parses arguments and calls the library.

Exit codes: 0 success, 2 bad input (config, data, paths, usage), 1 failure during a run, 3 stopped by a
health check (checkpoint saved), 4 stopped by the hang watchdog, 130 / 143 stopped by Ctrl-C / SIGTERM.
"""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from grpokit.cli.common import (
    ConfigArg,
    QuietOption,
    SetOption,
    VerboseOption,
    console,
    lighter_interpreter_exit,
    reporting_errors,
    setup_logging,
    stdout,
)
from grpokit.cli.launch import launch_app
from grpokit.cli.migration import (
    accelerate_launch_options,
    print_default_differences,
    print_overrides,
    resolve_for_job,
)
from grpokit.cli.migration import convert as convert_command
from grpokit.cli.tables import print_sample_conversation, reward_table
from grpokit.cli.train import train_here, train_with_torchrun

DEFAULT_PROBE_ROWS = 16  # grpokit.commands.probe.DEFAULT_ROWS (not imported here: the CLI starts without torch)

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
    verbose: VerboseOption = False,
    quiet: QuietOption = False,
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
    setup_logging(verbose, quiet)
    rendezvous_options = {"nnodes": nnodes, "node_rank": node_rank, "master_addr": master_addr, "master_port": master_port}
    with reporting_errors():
        from grpokit.config.loading import read_config

        config_file = read_config(config, list(set_ or []))  # the file, read once in this process
        if nproc is None:  # an accelerate config under distributed: carries its process count
            nproc, rendezvous_options = accelerate_launch_options(config_file, rendezvous_options)
    if nproc is not None:
        train_with_torchrun(config_file, nproc, **rendezvous_options)
    with reporting_errors():
        train_here(config_file)


@app.command()
def validate(
    config: ConfigArg,
    set_: SetOption = None,
    rows: Annotated[int, typer.Option(help="Dataset rows to run the rewards on.")] = 2,
    probe: Annotated[
        bool, typer.Option("--probe", help="Also sample the model on 16 prompts and print the probe's one-line projection.")
    ] = False,
    trial_step: Annotated[
        bool, typer.Option(help="Run one GRPO step with the config's TRL settings and rewards on the built-in model.")
    ] = True,
) -> None:
    """Check CONFIG, the data, the model and the rewards without training."""
    setup_logging()
    with reporting_errors():
        from grpokit.config import read_config, resolve_config

        config_file = read_config(config, list(set_ or []))
        nproc, rendezvous = accelerate_launch_options(config_file, {"nnodes": None}, announce=False)
        if nproc is not None:  # the job `grpokit train` would start: TRL's batch rules for its process count
            resolve_for_job(config_file, nproc * (rendezvous.get("nnodes") or 1))
        run_config = resolve_config(config_file)  # before the model stage is imported: bad input fails fast
        from grpokit.commands.validate import validate as run_validation

        report = run_validation(run_config, rows=rows, trial_step=trial_step)
        stdout.print(f"[green]config ok[/]: {config}")
        if nproc is not None:
            machines = rendezvous.get("nnodes") or 1
            stdout.print(f"launch: grpokit train starts {nproc} processes on each of {machines} machine(s) (checked for that job)")
        print_default_differences(run_config)
        print_overrides(run_config)
        stdout.print(f"[green]data ok[/]: {report.data_description}")
        for line in report.prompt_lengths:
            stdout.print(f"[green]prompts ok[/]: {line}")
        stdout.print(
            f"[green]model ok[/]: {report.model.source} ({report.model.model_type}, {report.model.num_parameters_hint}"
            f"{', chat template' if report.model.has_chat_template else ', no chat template'})"
        )
        if report.model.weights is not None:
            stdout.print(f"[green]memory[/]: {report.model.weights.line()}")
        stdout.print(reward_table(report))
        for note in report.notes:
            stdout.print(f"[yellow]note[/]: {note}", highlight=False)
        if report.trial_step is not None:
            stdout.print(
                f"[green]trial step ok[/]: one GRPO step with these settings and rewards on {report.trial_step.model} "
                f"({report.trial_step.seconds:.1f} s); the run trains {report.trial_step.total_steps:,} steps"
            )
        if probe:
            from grpokit.commands.probe import ProbeOptions, projection_line, run_probe

            probed = run_probe(run_config, ProbeOptions(rows=16, write_json=False))
            stdout.print(projection_line(probed))
            for step in probed.next_steps:
                stdout.print(f"next step: {step}", highlight=False, markup=False)


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


class DemoTask(str, Enum):
    """`grpokit demo --task`: what the demo teaches; each task's demo lives in its own module of grpokit.commands."""

    addition = "addition"  # builtin:tiny, 2-digit addition (commands/demo.py)
    tools = "tools"  # builtin:tiny-chat, a calculator tool for 3-digit multiplication (commands/demo_tools.py)
    aws_sample = "aws-sample"  # builtin:tiny-chat, the AWS sample's config, rewards and format (commands/demo_aws_sample.py)


@app.command()
def demo(
    task: Annotated[
        DemoTask,
        typer.Option(
            help="addition: builtin:tiny learns 2-digit addition (about 20 s). "
            "tools: builtin:tiny-chat learns to call a calculator tool for 3-digit multiplication (about 2 min). "
            "aws-sample: the AWS sample's converted config (QLoRA 4-bit, its three rewards, its system prompt) "
            "trains builtin:tiny-chat to answer in its <think>/<answer> format (about 5 min)."
        ),
    ] = DemoTask.addition,
    output_dir: Annotated[
        Path | None,
        typer.Option(
            help="Where the model, summary.json and report.html go (default: outputs/demo, outputs/demo-tools, "
            "outputs/demo-aws-sample)."
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            help="Another demo config (default: the settings of examples/demo.yaml, examples/demo_tools.yaml, "
            "examples/aws_sample/demo.yaml)."
        ),
    ] = None,
    set_: SetOption = None,
) -> None:
    """Train a built-in model with GRPO on a task; show held-out figures before and after, and a report."""
    setup_logging()
    with reporting_errors():
        if task is DemoTask.tools:
            from grpokit.commands.demo_tools import DEFAULT_OUTPUT_DIR, run_tools_demo, tools_summary_table

            result = run_tools_demo(output_dir or Path(DEFAULT_OUTPUT_DIR), config_path=config, overrides=set_ or [], console=console)
            stdout.print(tools_summary_table(result))
            return
        if task is DemoTask.aws_sample:
            from grpokit.commands.demo_aws_sample import DEFAULT_OUTPUT_DIR, summary_table
            from grpokit.commands.demo_aws_sample import run_aws_sample_demo as run_demo
        else:
            from grpokit.commands.demo import DEFAULT_OUTPUT_DIR, run_demo, summary_table

        result = run_demo(output_dir or Path(DEFAULT_OUTPUT_DIR), config_path=config, overrides=set_ or [], console=console)
        stdout.print(summary_table(result))


@app.command()
def report(
    output_dirs: Annotated[list[Path], typer.Argument(help="The output_dir of a finished, stopped or running training; two or more: compare them.")],
    output: Annotated[Path, typer.Option(help="With two or more runs: where the compare page goes.")] = Path("compare.html"),
) -> None:
    """Write OUTPUT_DIR/report.html: health, curves, per-reward statistics, sample completions and the config."""
    if len(output_dirs) > 1:
        compare(output_dirs, output)
        return
    with reporting_errors():
        from grpokit.outputs.report import write_report

        stdout.print(f"report: [bold]{write_report(output_dirs[0]).html}[/]")


@app.command()
def compare(
    output_dirs: Annotated[list[Path], typer.Argument(help="Two or more training output directories.")],
    output: Annotated[Path, typer.Option(help="Where the compare page goes (default: compare.html in the current folder).")] = Path("compare.html"),
) -> None:
    """Put runs side by side: health, curves overlaid, configs diffed, completions for the same prompts."""
    with reporting_errors():
        from grpokit.outputs.compare import write_compare

        written = write_compare(output_dirs, output).resolve()
        stdout.print(f"compare: wrote [bold]{written}[/] ({len(output_dirs)} runs side by side)", highlight=False)


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
    generate: Annotated[bool, typer.Option("--generate", help="Generate the completions with the config's model (the default).")] = False,
    num_samples: Annotated[int, typer.Option(help="With --generate: completions per row (1: greedy).")] = 1,
    split: Annotated[str, typer.Option(help="Dataset split: train or test.")] = "train",
) -> None:
    """Run every configured reward on a few rows and print each score and the weighted total."""
    setup_logging()
    with reporting_errors():
        from grpokit.config import load_config

        run_config = load_config(config, set_ or [])
        from grpokit.commands.rewards import debug_rewards, scores_table

        report = debug_rewards(
            run_config,
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
        from grpokit.config import load_config

        run_config = load_config(config, set_ or [])
        from grpokit.commands.evaluate import EvalOptions, eval_table, run_eval

        options = EvalOptions(
            split=_split_name(split), num_samples=num_samples, max_rows=rows, reference_column=reference_column
        )
        report = run_eval(run_config, model, options, output_dir=output, compare=compare)
        stdout.print(eval_table(report))
        print_sample_conversation(report.result.samples)
        stdout.print(f"wrote [bold]{report.eval_path}[/] and {report.samples_path.name}")
        _refresh_run_report(Path(model), report.eval_path)


def _refresh_run_report(model: Path, eval_path: Path) -> None:
    """After `grpokit eval --model RUN_DIR`: rewrite the run's report, which shows eval/eval.json."""
    from grpokit.outputs.files import EVAL_DIR, EVAL_FILE, METRICS_FILE

    if not (model / METRICS_FILE).is_file() or eval_path.resolve() != (model / EVAL_DIR / EVAL_FILE).resolve():
        return
    from grpokit.outputs.report import write_report

    stdout.print(f"report: [bold]{write_report(model).html}[/] (with these results)")


@app.command()
def probe(
    config: ConfigArg,
    set_: SetOption = None,
    rows: Annotated[int, typer.Option(help="Prompts to probe: the first N rows of the training set.")] = DEFAULT_PROBE_ROWS,
    samples: Annotated[
        int | None, typer.Option(help="Completions per prompt (default: the config's num_generations, the group size).")
    ] = None,
    pass_threshold: Annotated[
        float | None, typer.Option(help="A completion passes when its weighted total reaches this (default: the sum of the weights).")
    ] = None,
    write_filtered: Annotated[
        Path | None,
        typer.Option(help="Write the training data without the probed prompts whose samples all got one reward (.jsonl, .csv, .parquet)."),
    ] = None,
    output: Annotated[Path | None, typer.Option(help="Where probe.json goes (default: <output_dir>/probe.json).")] = None,
) -> None:
    """Sample the model on a few prompts: rewards, zero-spread groups, lengths, speed, memory, projected run time."""
    setup_logging()
    with reporting_errors():
        from grpokit.config import load_config

        run_config = load_config(config, set_ or [])
        from grpokit.commands.probe import ProbeOptions, probe_tables, projection_line, run_probe

        options = ProbeOptions(rows=rows, samples=samples, pass_threshold=pass_threshold, write_filtered=write_filtered)
        report = run_probe(run_config, options, json_path=output)
        for table in probe_tables(report):
            stdout.print(table)
        stdout.print(projection_line(report))
        for step in report.next_steps:
            stdout.print(f"next step: {step}", highlight=False, markup=False)


def _split_name(split: str) -> str:
    if split not in ("train", "test"):
        raise typer.BadParameter(f"--split must be train or test, got {split!r}")
    return split


def main() -> None:
    """Console-script entry point."""
    lighter_interpreter_exit()
    app()


app.add_typer(launch_app, name="launch")
app.command(name="convert")(convert_command)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
