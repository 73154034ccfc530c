"""`grpokit launch ...`: run training somewhere else. Parses flags and calls `grpokit.launch.sagemaker`.

The settings flags of `grpokit launch sagemaker` are generated from `SageMakerSettings` (the config's
`sagemaker:` section): each flag's name, type, help and default come from the field, written once.
"""

from __future__ import annotations

import inspect
import json
import os
import tempfile
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic.fields import FieldInfo

from grpokit.cli.common import ConfigArg, SetOption, console, reporting_errors, setup_logging, stdout
from grpokit.config.sagemaker import SageMakerSettings

launch_app = typer.Typer(
    help="Run training somewhere else: an Amazon SageMaker training job.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_SETTINGS = "Settings (also in the config's sagemaker: section; a flag wins)"


def _flag_name(name: str, info: FieldInfo) -> str:
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    return str(extra.get("flag") or name.replace("_", "-"))


def _flag_help(info: FieldInfo) -> str:
    description = info.description or ""
    if info.default is None or info.default_factory is not None:
        return description  # "None: ..." in the description says what happens without it
    shown = ("on" if info.default else "off") if isinstance(info.default, bool) else info.default
    return f"{description} (default: {shown})"


def _settings_parameter(name: str, info: FieldInfo) -> inspect.Parameter:
    """The typer parameter for one `SageMakerSettings` field: None means "flag not given"."""
    flag, annotation = _flag_name(name, info), info.annotation
    kinds = set(typing.get_args(annotation)) or {annotation}
    if bool in kinds:
        option, kind = typer.Option(f"--{flag}/--no-{flag}", help=_flag_help(info), rich_help_panel=_SETTINGS), bool
    elif typing.get_origin(annotation) is dict:
        option, kind = typer.Option(f"--{flag}", help=_flag_help(info) + " Repeatable.", rich_help_panel=_SETTINGS), list[str]
    else:
        kind = int if int in kinds else str  # a Literal is checked by the schema, with the config's message
        option = typer.Option(f"--{flag}", help=_flag_help(info), rich_help_panel=_SETTINGS)
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[kind | None, option])


def settings_from_flags(values: dict[str, Any]) -> dict[str, Any]:
    """The given flags as `SageMakerSettings` fields (None: not given); `KEY=VALUE` flags become mappings."""
    from grpokit.launch.sagemaker.settings import parse_key_values

    flags: dict[str, Any] = {}
    for name, info in SageMakerSettings.model_fields.items():
        value = values.get(name)
        if value is not None and typing.get_origin(info.annotation) is dict:
            extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
            local_env = os.environ if extra.get("bare_key_from_shell") else None
            value = parse_key_values(value, option=f"--{_flag_name(name, info)}", local_env=local_env) if value else None
        flags[name] = value
    return flags


def with_settings_flags(command: Callable[..., None]) -> Callable[..., None]:
    """`command` with one keyword-only flag per `SageMakerSettings` field added to its signature (after CONFIG)."""
    signature = inspect.signature(command, eval_str=True)  # the generated signature replaces string annotations
    own = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    generated = [_settings_parameter(name, info) for name, info in SageMakerSettings.model_fields.items()]
    positional = [p for p in own if p.kind is not inspect.Parameter.KEYWORD_ONLY]
    keyword = [p for p in own if p.kind is inspect.Parameter.KEYWORD_ONLY]
    command.__signature__ = signature.replace(parameters=[*positional, *generated, *keyword])
    return command


@launch_app.command("sagemaker")
@with_settings_flags  # --role, --instance-type, ... --env: one per SageMakerSettings field
def sagemaker(
    config: ConfigArg,
    set_: SetOption = None,
    *,
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
    **settings: Any,
) -> None:
    """Train as CONFIG says on Amazon SageMaker: upload config, data and grpokit, and start a job."""
    setup_logging()
    with reporting_errors():
        from grpokit.launch.sagemaker import plan as planning
        from grpokit.launch.sagemaker import staging as job_files
        from grpokit.launch.sagemaker import submit as aws

        plan = planning.prepare_launch(config, set_ or [], settings_from_flags(settings))
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
