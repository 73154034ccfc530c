"""`grpokit launch ...`: run training somewhere else. Parses flags and calls `grpokit.launch.sagemaker`."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from grpokit.cli.common import ConfigArg, SetOption, console, reporting_errors, setup_logging, stdout

launch_app = typer.Typer(
    help="Run training somewhere else: an Amazon SageMaker training job.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_SETTINGS = "Settings (also in the config's sagemaker: section; a flag wins)"


@launch_app.command("sagemaker")
def sagemaker(
    config: ConfigArg,
    set_: SetOption = None,
    role: Annotated[
        str | None, typer.Option(help="IAM execution role ARN the job runs as.", rich_help_panel=_SETTINGS)
    ] = None,
    instance_type: Annotated[
        str | None, typer.Option(help="Instance type (default: ml.g5.2xlarge).", rich_help_panel=_SETTINGS)
    ] = None,
    instance_count: Annotated[
        int | None, typer.Option(help="Number of instances (default: 1).", rich_help_panel=_SETTINGS)
    ] = None,
    volume_size: Annotated[
        int | None,
        typer.Option(help="EBS volume per instance, GB (default: 100).", rich_help_panel=_SETTINGS),
    ] = None,
    region: Annotated[
        str | None, typer.Option(help="AWS region (default: $AWS_REGION).", rich_help_panel=_SETTINGS)
    ] = None,
    bucket: Annotated[
        str | None,
        typer.Option(help="S3 bucket (default: the SDK's default bucket).", rich_help_panel=_SETTINGS),
    ] = None,
    prefix: Annotated[
        str | None, typer.Option(help="S3 key prefix (default: grpokit).", rich_help_panel=_SETTINGS)
    ] = None,
    image_uri: Annotated[
        str | None,
        typer.Option(
            help="Training image (default: the AWS PyTorch 2.8.0 training image).", rich_help_panel=_SETTINGS
        ),
    ] = None,
    job_name: Annotated[
        str | None, typer.Option(help="Base job name (default: grpokit).", rich_help_panel=_SETTINGS)
    ] = None,
    max_runtime: Annotated[
        int | None, typer.Option(help="Max runtime, seconds (default: 86400).", rich_help_panel=_SETTINGS)
    ] = None,
    spot: Annotated[
        bool | None,
        typer.Option("--spot/--no-spot", help="Managed spot training.", rich_help_panel=_SETTINGS),
    ] = None,
    max_wait: Annotated[
        int | None,
        typer.Option(
            help="Spot: max wait incl. runtime, seconds (default: 2 x max runtime).",
            rich_help_panel=_SETTINGS,
        ),
    ] = None,
    checkpoint_s3_uri: Annotated[
        str | None,
        typer.Option(help="S3 checkpoints; reuse a previous job's to resume it.", rich_help_panel=_SETTINGS),
    ] = None,
    output_s3_uri: Annotated[
        str | None, typer.Option(help="Where model.tar.gz goes.", rich_help_panel=_SETTINGS)
    ] = None,
    keep_alive: Annotated[
        int | None, typer.Option(help="Warm pool: keep the instances N seconds after the job (at most 3600).", rich_help_panel=_SETTINGS)
    ] = None,
    launcher: Annotated[
        str | None, typer.Option(help="torchrun (default) or accelerate (accelerate launch with the distributed: file).", rich_help_panel=_SETTINGS)
    ] = None,
    tag: Annotated[
        list[str] | None, typer.Option(help="Job tag KEY=VALUE (repeatable).", rich_help_panel=_SETTINGS)
    ] = None,
    env: Annotated[
        list[str] | None,
        typer.Option(
            help="Job environment KEY=VALUE, or KEY to copy this shell's value (repeatable).",
            rich_help_panel=_SETTINGS,
        ),
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Follow the job's status until it ends.")] = False,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="Print the CreateTrainingJob request as JSON; upload and create nothing."
        ),
    ] = False,
    poll_seconds: Annotated[
        float, typer.Option(help="Status poll interval with --wait.", hidden=True)
    ] = 30.0,
) -> None:
    """Train as CONFIG says on Amazon SageMaker: upload config, data and grpokit, and start a job."""
    setup_logging()
    with reporting_errors():
        from grpokit.launch.sagemaker import plan as planning
        from grpokit.launch.sagemaker import settings as job_settings
        from grpokit.launch.sagemaker import staging as job_files
        from grpokit.launch.sagemaker import submit as aws

        flags = {
            "role": role,
            "instance_type": instance_type,
            "instance_count": instance_count,
            "volume_size_gb": volume_size,
            "region": region,
            "bucket": bucket,
            "prefix": prefix,
            "image_uri": image_uri,
            "job_name": job_name,
            "max_runtime_seconds": max_runtime,
            "spot": spot,
            "max_wait_seconds": max_wait,
            "checkpoint_s3_uri": checkpoint_s3_uri,
            "output_s3_uri": output_s3_uri,
            "keep_alive_seconds": keep_alive,
            "launcher": launcher,
            "tags": job_settings.parse_key_values(tag, option="--tag") if tag else None,
            "environment": job_settings.parse_key_values(env, option="--env", local_env=os.environ)
            if env
            else None,
        }
        plan = planning.prepare_launch(config, set_ or [], flags)
        with tempfile.TemporaryDirectory(prefix="grpokit-launch-") as staging:
            staged = job_files.stage_job_files(plan, Path(staging))
            if dry_run:
                typer.echo(json.dumps(aws.training_job_request(plan, staged), indent=2, default=str))
                console.print("[yellow]dry run[/]: nothing uploaded, no job created")
                if not plan.settings.role:
                    console.print(
                        "[yellow]note[/]: no --role given; the request shows a placeholder role ARN"
                    )
                return
            job = aws.submit_job(plan, staged)
        stdout.print(f"started SageMaker training job [bold]{job.name}[/] in {job.region}", highlight=False)
        stdout.print(f"console: {job.console_url}", highlight=False, soft_wrap=True)
        stdout.print(f"checkpoints: {job.checkpoint_s3_uri}", highlight=False, soft_wrap=True)
        if wait:
            status = aws.wait_for_job(
                job.name,
                job.region,
                poll_seconds=poll_seconds,
                on_change=lambda line: stdout.print(f"status: {line}", highlight=False),
            )
            if status.status != "Completed":
                console.print(
                    f"[bold red]job {status.status.lower()}[/]: {status.failure_reason or 'no reason given'}",
                    highlight=False,
                )
                raise typer.Exit(1)
            stdout.print(f"model: {status.model_artifacts}", highlight=False, soft_wrap=True)
