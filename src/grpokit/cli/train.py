"""`grpokit train`: train in this process (one rank, or the only one), or start the ranks through torchrun."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from grpokit.cli.common import console, reporting_errors, stdout
from grpokit.cli.log_format import one_line
from grpokit.cli.migration import resolve_for_job, trained_line
from grpokit.errors import GrpokitError, HealthCheckStopped

logger = logging.getLogger("grpokit.cli")

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
        logger.warning("reward '%s' failed on %d completions (scored 0.0, on_error: zero)", name, count)
    report = _report_or_warning(result.output_dir, write_report)
    if result.stopped_by_health is not None:
        from grpokit.trainer.health import stop_error

        _print_report(report)
        raise stop_error(result.stopped_by_health)  # exit code 3
    if result.stopped_by_signal is not None:
        logger.warning(
            "stopped by signal %d at step %d; the checkpoint is saved: run the same command again to resume",
            result.stopped_by_signal,
            result.global_step,
        )
        raise typer.Exit(128 + result.stopped_by_signal)  # as a shell reports a process ended by that signal
    stdout.print(trained_line(result))
    _print_report(report)


def _report_or_warning(output_dir: Path, write_report):
    """The run's report, or None with one warning: a run that trained and saved never fails because of its record."""
    try:
        return write_report(output_dir)
    except Exception as error:  # noqa: BLE001 -- the model is saved: say what went wrong, exit 0
        message = error.message if isinstance(error, GrpokitError) else f"{type(error).__name__}: {error}"
        logger.warning("no report for %s: %s", output_dir, one_line(message))
        return None


def _print_report(report) -> None:
    """The health of the whole run (verdict, then what held over it) and where the report is."""
    if report is None:
        return
    for line in report.health:
        stdout.print(line, highlight=False, markup=False)
    stdout.print(f"report: [bold]{report.html}[/]")


def train_with_torchrun(config_file: ConfigFile, nproc: int, **rendezvous_options) -> None:
    """Re-run this command under torchrun (minus the launch options) and exit with its exit code.

    The config is checked here first, for the job's number of processes, so a bad config is one
    message and exit code 2 rather than one traceback per rank.
    """
    from grpokit.launch.torchrun import (
        needs_launcher,
        resolve_rendezvous,
        run_forwarding_signals,
        torchrun_command,
    )

    with reporting_errors():
        rendezvous = resolve_rendezvous(nproc, **rendezvous_options)
        if needs_launcher(rendezvous):  # the ranks print the config's warnings themselves
            launch_config = resolve_for_job(config_file, rendezvous.nproc_per_node * rendezvous.nnodes)
            check_agent_before_launch(launch_config)
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


def check_agent_before_launch(config) -> None:
    """The agent keys' checks that need no data (tools, environments, rollout function, the chat template), made
    once before torchrun starts, so such a mistake is one message and exit code 2, not one per rank.

    Raises:
        ConfigError: as `rewards.agent.resolve_agent` and `model.tool_loop.check_tool_template`.
    """
    options = config.options
    if not (options.tools or options.environment or options.rollout_func):
        return
    from grpokit.model.loading import load_tokenizer
    from grpokit.model.tool_loop import check_tool_template
    from grpokit.rewards.agent import resolve_agent

    agent = resolve_agent(config)
    if agent.uses_tools:
        check_tool_template(load_tokenizer(options), environment=agent.environment_factory is not None, source=config.source)
