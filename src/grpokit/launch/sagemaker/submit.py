"""The thin edge that talks to AWS: the SDK's `ModelTrainer` for a plan, the request it sends, submit and wait.

The SageMaker SDK (3.x) is an optional extra (`pip install 'grpokit[sagemaker]'`) imported only
inside the functions that need it; the SDK's private parts are reached through
`grpokit.compat.sagemaker_internals` only.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from grpokit.compat import sagemaker_internals
from grpokit.errors import ConfigError, GrpokitError, RunError
from grpokit.launch.sagemaker.plan import (
    CONFIG_CHANNEL,
    CONTAINER_CHECKPOINT_DIR,
    SECRET_ENVIRONMENT,
    JobPlan,
)
from grpokit.launch.sagemaker.settings import SageMakerSettings
from grpokit.launch.sagemaker.staging import ENTRY_SCRIPT, REQUIREMENTS_FILE, StagedJob
from grpokit.secrets import MASK, is_secret_key

SDK_TELEMETRY_OFF = {
    "SchemaVersion": "1.0",
    "SageMaker": {"PythonSDK": {"Modules": {"TelemetryOptOut": True}}},
}
FINAL_JOB_STATUSES = ("Completed", "Failed", "Stopped")
SDK_MISSING_FIX = "pip install 'grpokit[sagemaker]' (the SageMaker SDK 3.x and boto3)"

# ----------------------------------------------------------------------------- the SDK's ModelTrainer


def _import_sdk():
    try:
        from sagemaker.train import ModelTrainer  # noqa: F401
    except ImportError:
        raise GrpokitError("the SageMaker SDK is not installed", fix=SDK_MISSING_FIX) from None


def build_model_trainer(plan: JobPlan, staged: StagedJob, session, *, trainer_class=None):
    """The SDK's `ModelTrainer` for the plan: torchrun (or the plan's accelerate command), checkpoints to S3, output to /opt/ml/model."""
    _import_sdk()
    from sagemaker.core.training.configs import (
        CheckpointConfig,
        Compute,
        InputData,
        OutputDataConfig,
        SourceCode,
        StoppingCondition,
    )
    from sagemaker.train import ModelTrainer
    from sagemaker.train.distributed import Torchrun

    settings = plan.settings
    channels = {CONFIG_CHANNEL: str(staged.config_dir), **plan.channels}
    output_s3_uri = settings.output_s3_uri or f"s3://{session.default_bucket()}/{settings.prefix_path}/output"
    return (trainer_class or ModelTrainer)(
        sagemaker_session=session,
        role=settings.role,
        base_job_name=settings.job_name,
        training_image=plan.image_uri,
        source_code=SourceCode(
            source_dir=str(staged.code_dir),
            requirements=REQUIREMENTS_FILE,
            **({"command": plan.command} if plan.command else {"entry_script": ENTRY_SCRIPT}),
        ),
        distributed=None if plan.command else Torchrun(),
        compute=Compute(
            instance_type=settings.instance_type,
            instance_count=settings.instance_count,
            volume_size_in_gb=settings.volume_size_gb,
            enable_managed_spot_training=settings.spot or None,
            keep_alive_period_in_seconds=settings.keep_alive_seconds,
        ),
        stopping_condition=StoppingCondition(
            max_runtime_in_seconds=settings.max_runtime_seconds,
            max_wait_time_in_seconds=settings.resolved_max_wait_seconds,
        ),
        checkpoint_config=CheckpointConfig(
            s3_uri=settings.checkpoint_s3_uri, local_path=CONTAINER_CHECKPOINT_DIR
        ),
        output_data_config=OutputDataConfig(s3_output_path=output_s3_uri),
        input_data_config=[
            InputData(channel_name=name, data_source=source) for name, source in channels.items()
        ],
        hyperparameters=dict(plan.hyperparameters),
        environment=dict(plan.environment),
        tags=[{"key": key, "value": value} for key, value in settings.tags.items()] or None,
    )


def make_session(settings: SageMakerSettings, *, offline: bool = False):
    """A SageMaker session for the region and bucket; `offline` never calls AWS (for --dry-run)."""
    _import_sdk()
    import boto3

    if offline and not settings.bucket:
        raise ConfigError(
            "--dry-run needs the bucket name (without AWS access it cannot look up the default one)",
            fix="pass --bucket",
        )
    credentials = {"aws_access_key_id": "dry-run", "aws_secret_access_key": "dry-run"} if offline else {}
    boto_session = boto3.Session(region_name=settings.region, **credentials)
    session_class = sagemaker_internals.offline_session_class() if offline else _sdk_session_class()
    return session_class(
        boto_session=boto_session,
        default_bucket=settings.bucket,
        default_bucket_prefix=settings.prefix_path or None,
        sagemaker_config=SDK_TELEMETRY_OFF,
    )


def _sdk_session_class():
    from sagemaker.core.helper.session_helper import Session

    return Session


def training_job_request(plan: JobPlan, staged: StagedJob) -> dict[str, Any]:
    """The CreateTrainingJob request the launch would send, built offline; secrets in it masked.

    Uses the SDK's own request builder (private in SDK 3.27, see `grpokit.compat`), so what
    is printed is what `ModelTrainer.train` sends, with would-be S3 URIs and nothing uploaded.
    """
    session = make_session(plan.settings, offline=True)
    role = plan.settings.role or "arn:aws:iam::000000000000:role/REPLACE-WITH-YOUR-SAGEMAKER-ROLE"
    with _role_validation_skipped():
        dry_plan = dataclasses.replace(plan, settings=plan.settings.model_copy(update={"role": role}))
        trainer = build_model_trainer(dry_plan, staged, session, trainer_class=sagemaker_internals.offline_trainer_class())
        request = sagemaker_internals.training_job_request_args(trainer)
    return mask_request_secrets(request)


@contextlib.contextmanager
def _role_validation_skipped() -> Iterator[None]:
    """SAGEMAKER_VALIDATE_ROLE=false while the trainer is built: the SDK validates the role through IAM."""
    previous = os.environ.get("SAGEMAKER_VALIDATE_ROLE")
    os.environ["SAGEMAKER_VALIDATE_ROLE"] = "false"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("SAGEMAKER_VALIDATE_ROLE", None)
        else:
            os.environ["SAGEMAKER_VALIDATE_ROLE"] = previous


def mask_request_secrets(request: dict[str, Any]) -> dict[str, Any]:
    """The request with every secret-looking environment value replaced by `***`."""
    masked = copy.deepcopy(request)
    environment = masked.get("Environment") or {}
    for key in environment:
        if is_secret_key(key) or key in SECRET_ENVIRONMENT.values():
            environment[key] = MASK
    return masked


# ----------------------------------------------------------------------------- the thin edge (AWS)


@dataclass(frozen=True)
class SubmittedJob:
    name: str
    region: str
    console_url: str
    checkpoint_s3_uri: str | None = None
    output_s3_uri: str | None = None


def console_url(region: str, job_name: str) -> str:
    domain = "console.amazonaws.cn" if region.startswith("cn-") else "console.aws.amazon.com"
    return f"https://{region}.{domain}/sagemaker/home?region={region}#/jobs/{job_name}"


def submit_job(plan: JobPlan, staged: StagedJob) -> SubmittedJob:
    """Upload the channels and code, and create the training job. Returns at once (no waiting)."""
    if not plan.settings.role:
        raise ConfigError(
            "no execution role",
            fix="pass --role arn:aws:iam::<account>:role/<SageMaker role>, or set sagemaker.role",
        )
    session = make_session(plan.settings)
    trainer = build_model_trainer(plan, staged, session)
    try:
        trainer.train(wait=False, logs=False)
    except Exception as error:  # botocore's errors: say which call failed, keep the AWS message
        raise RunError(
            f"SageMaker did not accept the job: {type(error).__name__}: {error}",
            fix="check the role, region, bucket and your AWS credentials",
        ) from error
    job = sagemaker_internals.latest_training_job(trainer)
    return SubmittedJob(
        name=job.training_job_name,
        region=plan.settings.region,
        console_url=console_url(plan.settings.region, job.training_job_name),
        checkpoint_s3_uri=trainer.checkpoint_config.s3_uri,
        output_s3_uri=trainer.output_data_config.s3_output_path,
    )


@dataclass
class JobStatus:
    status: str
    secondary_status: str | None = None
    failure_reason: str | None = None
    model_artifacts: str | None = None
    history: list[str] = field(default_factory=list)


def wait_for_job(
    job_name: str, region: str, *, poll_seconds: float = 30.0, on_change: Callable[[str], None] = print
) -> JobStatus:
    """Poll DescribeTrainingJob until the job ends; `on_change` gets one line per status change."""
    import boto3

    client = boto3.client("sagemaker", region_name=region)
    seen: list[str] = []
    while True:
        described = client.describe_training_job(TrainingJobName=job_name)
        line = described["TrainingJobStatus"] + (
            f" / {described['SecondaryStatus']}" if described.get("SecondaryStatus") else ""
        )
        if not seen or seen[-1] != line:
            seen.append(line)
            on_change(line)
        if described["TrainingJobStatus"] in FINAL_JOB_STATUSES:
            return JobStatus(
                status=described["TrainingJobStatus"],
                secondary_status=described.get("SecondaryStatus"),
                failure_reason=described.get("FailureReason"),
                model_artifacts=(described.get("ModelArtifacts") or {}).get("S3ModelArtifacts"),
                history=seen,
            )
        time.sleep(poll_seconds)


