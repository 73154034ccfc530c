"""`grpokit convert`, and the lines `validate` prints where a config differs from today's TRL defaults."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from grpokit.cli.common import console, reporting_errors, setup_logging, stdout
from grpokit.errors import ConfigError

if TYPE_CHECKING:
    from grpokit.config.loading import ConfigFile


def convert(
    kind: Annotated[
        str, typer.Argument(help="What SOURCE was written for: aws-sample (args.yaml), aws-accelerate or trl (trl grpo).")
    ],
    source: Annotated[Path, typer.Argument(help="The config to convert.", show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the grpokit config.")],
    trl_version: Annotated[
        str | None,
        typer.Option(help="The TRL version SOURCE was written for (default: 0.17.0 for aws-sample, 0.16.1 for "
                     "aws-accelerate, the installed TRL for trl)."),
    ] = None,
    accelerate_config: Annotated[
        Path | None, typer.Option(help="The accelerate config file the job ran with (the sample's default_config.yaml).")
    ] = None,
    train_data: Annotated[
        str | None,
        typer.Option(help="aws-sample: the training data outside the container, a local folder or file or an s3:// URI "
                     "(default: data/train/ beside SOURCE, where the sample's notebook writes it)."),
    ] = None,
    test_data: Annotated[
        str | None, typer.Option(help="aws-sample: the test data, likewise (default: data/test/ beside SOURCE).")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace OUTPUT if it exists.")] = False,
) -> None:
    """Rewrite a config written for the AWS sample or `trl grpo` as a grpokit config that trains the same."""
    setup_logging()
    with reporting_errors():
        from grpokit.commands.convert import SampleData, run_convert

        beside = SampleData.beside(source)
        data = SampleData(train=train_data or beside.train, test=test_data or beside.test)
        report = run_convert(
            kind, source, output, trl_version=trl_version, accelerate_config=accelerate_config, data=data, force=force
        )
        stdout.print(f"{kind} config {source} -> {report.path}; what it sets and why:", highlight=False)
        for line in report.notes:
            stdout.print(f"  {line}", highlight=False, markup=False)
        if report.check_error:
            console.print(f"[yellow]warning:[/] the written config does not load here: {report.check_error}", highlight=False)
        else:
            stdout.print(f"checked: {report.path} loads as a grpokit config", highlight=False)


def print_default_differences(config) -> None:
    """One line per field where `config` differs from the installed TRL's defaults, and why."""
    from grpokit.config.trl_versions import difference_lines, installed_trl_version

    lines = difference_lines(config)
    if not lines:
        stdout.print(f"differs from TRL {installed_trl_version()}'s defaults: in no field", highlight=False)
        return
    stdout.print(f"differs from TRL {installed_trl_version()}'s defaults in {len(lines)} fields:", highlight=False)
    for line in lines:
        stdout.print(f"  {line}", highlight=False, markup=False)


def print_overrides(config) -> None:
    """One line per value of `config` the run does not use as written (changed for this machine, or inert)."""
    lines = config.override_lines
    if not lines:
        return
    stdout.print(f"not used as written: {len(lines)} value{'s' if len(lines) > 1 else ''} of the config:", highlight=False)
    for line in lines:
        stdout.print(f"  {line}", highlight=False, markup=False)


def accelerate_launch_options(config_file: ConfigFile, given: dict, *, announce: bool = True) -> tuple[int | None, dict]:
    """(processes per machine, rendezvous options) the config asks for: `trl grpo`'s launch keys
    (`num_processes`, `num_machines`, ...), then an accelerate config under `distributed:` (or `accelerate_config`).

    (None, `given`) when the process was already started by a launcher (torchrun, accelerate launch,
    a SageMaker job), or when the config asks for one process. Options given on the command line win
    over the config's keys, which win over the accelerate file's (as `accelerate launch` options win over
    its `--config_file`). `announce`: say on the console how many processes start.
    Raises `ConfigError` for an unreadable file or a bad launch key.
    """
    import os

    from grpokit.launch.torchrun import LAUNCHED_MARKERS

    if any(os.environ.get(name) for name in LAUNCHED_MARKERS):
        return None, given
    keys = config_file.launch
    setup = config_file.distributed_setup  # resolved once: loading the config reuses it
    launch = setup.accelerate.launch if setup is not None and setup.accelerate is not None else None
    from_file = {}
    if launch is not None:
        from_file = {
            "nnodes": launch.num_machines if launch.num_machines > 1 else None,
            "node_rank": launch.machine_rank if launch.num_machines > 1 else None,
            "master_addr": launch.main_process_ip,
            "master_port": launch.main_process_port,
        }
    from_config = {**{k: v for k, v in from_file.items() if v is not None}, **keys.rendezvous()}
    machines = from_config.get("nnodes") or 1
    total = keys.num_processes if keys.num_processes is not None else launch.num_processes if launch is not None else None
    if total is None or (total == 1 and machines == 1):
        return None, given
    if total % machines:
        raise ConfigError(
            f"num_processes: {total} does not split evenly over num_machines: {machines}",
            where=config_file.source,
            fix="give num_processes as the total over all machines, a multiple of num_machines",
        )
    merged = {key: given.get(key) if given.get(key) is not None else from_config.get(key) for key in given}
    named = "num_processes" if keys.num_processes is not None else f"distributed: {setup.name}"
    if announce:
        console.print(
            f"{named} asks for {total} processes on {machines} machine(s): starting {total // machines} here (--nproc overrides)",
            highlight=False,
        )
    return total // machines, merged


def resolve_for_job(config_file: ConfigFile, world_size: int):
    """The config checked for a job of `world_size` processes (no `GRPOConfig` built), its warnings left to the
    ranks that run it: what `grpokit train` checks before it starts torchrun, and `grpokit validate` too."""
    import logging

    from grpokit.config.loading import resolve_config

    grpokit_logger = logging.getLogger("grpokit")
    level = grpokit_logger.level
    grpokit_logger.setLevel(logging.ERROR)  # the ranks (or the load that follows) print the warnings
    try:
        return resolve_config(config_file, world_size=world_size)
    finally:
        grpokit_logger.setLevel(level)


def trained_line(result) -> str:
    """`trained N steps ...`: the steps this run trained, not the checkpoint's step count after a resume."""
    trained = result.global_step - result.resumed_step
    resumed = f" (resumed at step {result.resumed_step}, now at step {result.global_step})" if result.resumed_from else ""
    return f"trained {trained} steps{resumed} in {result.train_seconds:.0f} s; model saved to [bold]{result.output_dir}[/]"
