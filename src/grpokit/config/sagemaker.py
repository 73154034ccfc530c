"""The `sagemaker:` section of the config: where and how `grpokit launch sagemaker` runs the job.

The launcher itself is `grpokit.launch.sagemaker`; this module holds only the settings (pydantic
only), so the config schema names them without loading the launcher. Each setting's default and
help are written once, here: `grpokit launch sagemaker` generates its flags from these fields
(`Field(json_schema_extra={"flag": ...})` names a flag that is not the field's name; a mapping
is given as repeated `--flag KEY=VALUE`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# The AWS Deep Learning Container for PyTorch training: `pytorch-training:<version>-<gpu|cpu>-<py>`.
# 2.8.0 / py312 is a release the SDK's own image table (sagemaker 3.27) lists for every region;
# it satisfies grpokit's torch>=2.4 and leaves transformers/TRL/peft to requirements.txt. Override
# with --image-uri (or sagemaker.image_uri) for another release or your own image.
PYTORCH_DLC_VERSION = "2.8.0"


class SageMakerSettings(BaseModel):
    """Where and how the job runs: the `sagemaker:` section of the config, or the command-line flags."""

    model_config = ConfigDict(extra="forbid")

    role: str | None = Field(None, description="IAM execution role ARN (or name) the job runs as.")
    region: str | None = Field(None, description="AWS region. None: AWS_REGION / AWS_DEFAULT_REGION.")
    instance_type: str = Field("ml.g5.2xlarge", description="Training instance type.")
    instance_count: int = Field(1, ge=1, description="Number of instances (torchrun nodes).")
    volume_size_gb: int = Field(
        100,
        ge=1,
        description="EBS volume per instance, GB (model downloads, checkpoints).",
        json_schema_extra={"flag": "volume-size"},
    )
    bucket: str | None = Field(
        None, description="S3 bucket for inputs, code, checkpoints, output. None: the SDK's default bucket."
    )
    prefix: str = Field("grpokit", description="S3 key prefix under the bucket.")
    image_uri: str | None = Field(
        None, description=f"Training image. None: the AWS PyTorch {PYTORCH_DLC_VERSION} training image."
    )
    job_name: str = Field(
        "grpokit",
        pattern=r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,47}$",
        description="Base job name (letters, digits, hyphens; at most 48): the SDK appends a timestamp.",
    )
    max_runtime_seconds: int = Field(
        24 * 3600,
        ge=1,
        description="Stop the job after this long, seconds (SIGTERM, then 120 s).",
        json_schema_extra={"flag": "max-runtime"},
    )
    spot: bool = Field(
        False, description="Use managed spot training (cheaper; may be interrupted and resumed)."
    )
    max_wait_seconds: int | None = Field(
        None,
        ge=1,
        description="Spot: give up after this long incl. waiting, seconds. None: 2 x max_runtime.",
        json_schema_extra={"flag": "max-wait"},
    )
    checkpoint_s3_uri: str | None = Field(
        None, description="Checkpoints in S3. None: a per-job prefix. Reuse a URI to resume a previous job."
    )
    output_s3_uri: str | None = Field(
        None, description="Where model.tar.gz goes. None: s3://<bucket>/<prefix>/output."
    )
    keep_alive_seconds: int | None = Field(
        None,
        ge=1,
        le=3600,
        description="Warm pool: keep the instances this many seconds after the job ends, so the next job with the same "
        "instance settings starts in seconds (SageMaker's KeepAlivePeriodInSeconds, at most 3600; not with spot).",
        json_schema_extra={"flag": "keep-alive"},
    )
    launcher: Literal["torchrun", "accelerate"] = Field(
        "torchrun",
        description="How the job starts grpokit on each instance: torchrun (one process per GPU), or `accelerate "
        "launch --config_file <the config's distributed: file>` (an accelerate config), as the AWS sample's "
        "accelerate variant did.",
    )
    tags: dict[str, str] = Field(
        default_factory=dict, description="Tags on the training job (--tag KEY=VALUE).", json_schema_extra={"flag": "tag"}
    )
    environment: dict[str, str] = Field(
        default_factory=dict,
        description="Environment variables in the job (--env KEY=VALUE, or --env KEY to copy this shell's value).",
        json_schema_extra={"flag": "env", "bare_key_from_shell": True},
    )

    @model_validator(mode="after")
    def _check_spot(self) -> SageMakerSettings:
        if self.keep_alive_seconds is not None and self.spot:
            raise ValueError("keep_alive_seconds (a warm pool) does not work with spot training: set spot: false or remove it")
        if self.max_wait_seconds is not None and not self.spot:
            raise ValueError("max_wait_seconds only applies to spot training: set spot: true or remove it")
        if (
            self.spot
            and self.max_wait_seconds is not None
            and self.max_wait_seconds < self.max_runtime_seconds
        ):
            raise ValueError(
                f"max_wait_seconds ({self.max_wait_seconds}) must be at least max_runtime_seconds "
                f"({self.max_runtime_seconds}): the wait includes the run"
            )
        return self

    @property
    def resolved_max_wait_seconds(self) -> int | None:
        if not self.spot:
            return None
        return self.max_wait_seconds or 2 * self.max_runtime_seconds

    @property
    def prefix_path(self) -> str:
        return self.prefix.strip("/")
