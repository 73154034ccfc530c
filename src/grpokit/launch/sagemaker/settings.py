"""Where and how a SageMaker job runs: the `sagemaker:` section of the config, the flags, the image.

`SageMakerSettings` is the section's typed schema: `load_config` validates it with the rest of the
file, and `resolve_settings` merges defaults < section < command-line flags for a launch.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from grpokit.errors import ConfigError, config_error_from_validation

# The AWS Deep Learning Container for PyTorch training: `pytorch-training:<version>-<gpu|cpu>-<py>`.
# 2.8.0 / py312 is a release the SDK's own image table (sagemaker 3.27) lists for every region below;
# it satisfies grpokit's torch>=2.4 and leaves transformers/TRL/peft to requirements.txt. Override
# with --image-uri (or sagemaker.image_uri) for another release or your own image.
PYTORCH_DLC_VERSION = "2.8.0"
PYTORCH_DLC_PYTHON = "py312"
DLC_DEFAULT_ACCOUNT = "763104351884"
# Regions whose DLC registry is not the default account (copied from the SDK's pytorch.json).
DLC_REGION_ACCOUNTS = {
    "af-south-1": "626614931356",
    "ap-east-1": "871362719292",
    "ap-east-2": "975050140332",
    "ap-northeast-3": "364406365360",
    "ap-south-2": "772153158452",
    "ap-southeast-3": "907027046896",
    "ap-southeast-4": "457447274322",
    "ap-southeast-5": "550225433462",
    "ap-southeast-6": "633930458069",
    "ap-southeast-7": "590183813437",
    "ca-west-1": "204538143572",
    "cn-north-1": "727897471807",
    "cn-northwest-1": "727897471807",
    "eu-central-2": "380420809688",
    "eu-south-1": "692866216735",
    "eu-south-2": "503227376785",
    "il-central-1": "780543022126",
    "me-central-1": "914824155844",
    "me-south-1": "217643126080",
    "me-west-1": "124382933778",
    "mx-central-1": "637423239942",
    "us-gov-east-1": "446045086412",
    "us-gov-west-1": "442386744353",
}
GPU_INSTANCE_FAMILIES = ("ml.p", "ml.g")  # ml.p4d, ml.p5, ml.g5, ml.g6, ml.g6e, ...
NEURON_INSTANCE_FAMILIES = ("ml.trn", "ml.inf")


class SageMakerSettings(BaseModel):
    """Where and how the job runs: the `sagemaker:` section of the config, or the command-line flags."""

    model_config = ConfigDict(extra="forbid")

    role: str | None = Field(None, description="IAM execution role ARN (or name) the job runs as.")
    region: str | None = Field(None, description="AWS region. None: AWS_REGION / AWS_DEFAULT_REGION.")
    instance_type: str = Field("ml.g5.2xlarge", description="Training instance type.")
    instance_count: int = Field(1, ge=1, description="Number of instances (torchrun nodes).")
    volume_size_gb: int = Field(
        100, ge=1, description="EBS volume per instance, GB (model downloads, checkpoints)."
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
        24 * 3600, ge=1, description="Stop the job after this long (SIGTERM, then 120 s)."
    )
    spot: bool = Field(
        False, description="Use managed spot training (cheaper; may be interrupted and resumed)."
    )
    max_wait_seconds: int | None = Field(
        None, ge=1, description="Spot: give up after this long incl. waiting. None: 2 x max_runtime."
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
    )
    launcher: Literal["torchrun", "accelerate"] = Field(
        "torchrun",
        description="How the job starts grpokit on each instance: torchrun (one process per GPU), or `accelerate "
        "launch --config_file <the config's distributed: file>` (an accelerate config), as the AWS sample's "
        "accelerate variant did.",
    )
    tags: dict[str, str] = Field(default_factory=dict, description="Tags on the training job.")
    environment: dict[str, str] = Field(default_factory=dict, description="Environment variables in the job.")

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


def resolve_settings(
    section: Mapping[str, Any], flags: Mapping[str, Any], *, source: str, env: Mapping[str, str] = os.environ
) -> SageMakerSettings:
    """Defaults < the config's `sagemaker:` section < flags (None means "flag not given").

    `tags` and `environment` merge key by key. Raises `ConfigError` naming the bad key.
    """
    merged: dict[str, Any] = dict(section)
    for key, value in flags.items():
        if value is None:
            continue
        if key in ("tags", "environment"):
            merged[key] = {**(merged.get(key) or {}), **value}
        else:
            merged[key] = value
    merged.setdefault("region", env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION"))
    try:
        return SageMakerSettings(**merged)
    except ValidationError as error:
        first = error.errors()[0]
        key = ".".join(str(part) for part in first["loc"])
        if first["type"] == "extra_forbidden":  # the same message as an unknown key in any section
            raise config_error_from_validation(error, source, model=SageMakerSettings, prefix="sagemaker.") from None
        message = first["msg"].removeprefix("Value error, ")
        what = f"sagemaker.{key}: {message}" if key else message
        fix = "change it in the config's sagemaker: section or the matching --flag"
        raise ConfigError(what, where=source, fix=fix) from None


def parse_key_values(
    values: list[str], *, option: str, local_env: Mapping[str, str] | None = None
) -> dict[str, str]:
    """`--tag K=V` / `--env K=V` into a dict. With `local_env`, a bare `--env K` copies K's local value."""
    parsed: dict[str, str] = {}
    for text in values:
        key, sep, value = text.partition("=")
        if not key:
            raise ConfigError(f"{option} expects KEY=VALUE, got {text!r}")
        if not sep:
            if local_env is None:
                raise ConfigError(
                    f"{option} expects KEY=VALUE, got {text!r}", fix=f"for example {option} team=research"
                )
            if key not in local_env:
                raise ConfigError(
                    f"{option} {key}: {key} is not set in this shell",
                    fix=f"export {key}=... or use {option} {key}=VALUE",
                )
            value = local_env[key]
        parsed[key] = value
    return parsed


def is_gpu_instance(instance_type: str) -> bool:
    return instance_type.startswith(GPU_INSTANCE_FAMILIES)


def default_image_uri(region: str, instance_type: str, *, version: str = PYTORCH_DLC_VERSION) -> str:
    """The AWS PyTorch training image for `region`, GPU or CPU build to match `instance_type`."""
    if instance_type.startswith(NEURON_INSTANCE_FAMILIES):
        raise ConfigError(
            f"{instance_type} is a Trainium/Inferentia instance; the default PyTorch image does not run there",
            fix="choose a GPU instance (ml.g5, ml.g6e, ml.p4d, ml.p5) or pass a Neuron image with --image-uri",
        )
    account = DLC_REGION_ACCOUNTS.get(region, DLC_DEFAULT_ACCOUNT)
    domain = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    processor = "gpu" if is_gpu_instance(instance_type) else "cpu"
    return f"{account}.dkr.ecr.{region}.{domain}/pytorch-training:{version}-{processor}-{PYTORCH_DLC_PYTHON}"

