"""`grpokit train`: train in this process (one rank, or the only one), or start the ranks through torchrun."""

from __future__ import annotations

import logging
import sys
import time
from typing import TYPE_CHECKING

import typer

from grpokit.cli.common import console, reporting_errors, stdout
from grpokit.cli.migration import trained_line
from grpokit.errors import HealthCheckStopped

if TYPE_CHECKING:
    from grpokit.config.loading import ConfigFile


def train_here(config_file: ConfigFile) -> None:
    """Train in this process (one rank of a torchrun job, or the only process), on the config as read."""
    from grpokit.config.loading import resolve_config
    from grpokit.launch.container import in_sagemaker, sagemaker_overrides

    if in_sagemaker():  # channels, SM_MODEL_DIR and /opt/ml/checkpoints replace local paths
        config_file = config_file.with_overrides(sagemaker_overrides(config_file.data))
    run_config = resolve_config(config_file)  # a bad file or key is reported before the trainer is imported
    from grpokit.outputs.report import write_report
    from grpokit.trainer import train as run_training

    result = run_training(run_config, console=console)
    if not result.is_main_process:
        if result.stopped_by_health is not None:
            raise typer.Exit(HealthCheckStopped.exit_code)  # rank 0 says what tripped
        return
    for name, count in result.reward_failures.items():
        console.print(f"[yellow]warning:[/] reward '{name}' failed on {count} completions (scored 0.0, on_error: zero)")
    report = write_report(result.output_dir).html
    if result.stopped_by_health is not None:
        from grpokit.trainer.health import stop_error

        stdout.print(f"report: [bold]{report}[/]")
        raise stop_error(result.stopped_by_health)  # exit code 3
    if result.stopped_by_signal is not None:
        console.print(
            f"[yellow]stopped by signal {result.stopped_by_signal} at step {result.global_step}[/]; "
            "the checkpoint is saved: run the same command again to resume"
        )
        raise typer.Exit(128 + result.stopped_by_signal)  # as a shell reports a process ended by that signal
    stdout.print(trained_line(result))
    stdout.print(f"report: [bold]{report}[/]")


def train_with_torchrun(config_file: ConfigFile, nproc: int, **rendezvous_options) -> None:
    """Re-run this command under torchrun (minus the launch options) and exit with its exit code.

    The config is checked here first, for the job's number of processes, so a bad config is one
    message and exit code 2 rather than one traceback per rank.
    """
    from grpokit.config.loading import resolve_config
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
                launch_config = resolve_config(config_file, world_size=rendezvous.nproc_per_node * rendezvous.nnodes)
            finally:
                grpokit_logger.setLevel(level)
    if needs_launcher(rendezvous):
        from grpokit.outputs.health_events import job_stop_event
        from grpokit.outputs.run_lock import run_lock_for_launched_ranks

        started = time.time()
        options = launch_config.options  # one run per output_dir: this launcher holds it for its ranks
        lock = run_lock_for_launched_ranks(options.output_dir, options.resolved_checkpoint_dir, node_rank=rendezvous.node_rank)
        with reporting_errors(), lock:
            code = run_forwarding_signals(torchrun_command(sys.argv[1:], rendezvous))
        stop = job_stop_event(code, launch_config.options.output_dir, since=started)  # torchrun says 1 for 3 / 4
        if stop is not None:
            console.print(f"[bold red]stopped:[/] {stop.message}", highlight=False)
        raise typer.Exit(stop.exit_code if stop is not None and stop.exit_code else code)
