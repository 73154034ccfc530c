"""`grpokit launch sagemaker`: run `grpokit train` as an Amazon SageMaker training job.

The job description is built by pure functions, in the order a reader follows it:

1. `read_launch_config`: the YAML file plus `--set` overrides, split into the training config and its
   `sagemaker:` section; the training config is validated as `grpokit train` would.
2. `resolve_settings`: defaults < `sagemaker:` section < command-line flags.
3. `plan_job`: what the job needs: channels (`config`, `train`, `test`, and `model` for a local or
   S3 model), the config the job reads (container paths, no secrets), environment variables
   (secrets go here, never into hyperparameters), requirements, the image.
4. `stage_job_files`: writes the config channel and the code directory (grpokit's own source, a
   generated `requirements.txt` and `grpokit_entry.py`) into a local staging directory.
5. `build_model_trainer` / `training_job_request`: the SDK's `ModelTrainer` and the exact
   CreateTrainingJob request it would send (`--dry-run` prints it; no credentials, no upload).

The thin edge, `submit_job` and `wait_for_job`, uploads and calls AWS. The SageMaker SDK (3.x) is an
optional extra (`pip install 'grpokit[sagemaker]'`) imported only inside the functions that need it.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import importlib.metadata
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from grpokit.errors import ConfigError, DataError, GrpokitError, RewardConfigError, RunError
from grpokit.sagemaker_env import DEFAULT_CHECKPOINT_ROOT

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

# The container's layout (SageMaker's fixed paths).
CHANNEL_ROOT = "/opt/ml/input/data"
CONFIG_CHANNEL, TRAIN_CHANNEL, TEST_CHANNEL, MODEL_CHANNEL = "config", "train", "test", "model"
CONFIG_FILE_NAME = "grpokit.yaml"
CONTAINER_CONFIG_PATH = f"{CHANNEL_ROOT}/{CONFIG_CHANNEL}/{CONFIG_FILE_NAME}"
CONTAINER_MODEL_DIR = "/opt/ml/model"
CONTAINER_CHECKPOINT_DIR = DEFAULT_CHECKPOINT_ROOT
REWARDS_SUBDIR = "rewards"  # user reward files, inside the config channel

ENTRY_SCRIPT = "grpokit_entry.py"
REQUIREMENTS_FILE = "requirements.txt"
CONFIG_HYPERPARAMETER = "config"  # the SDK runs `torchrun ... grpokit_entry.py --config <path>`

# Config keys holding secrets that have a standard environment variable; they never reach S3.
SECRET_ENVIRONMENT = {"token": "HF_TOKEN", "hub_token": "HF_TOKEN", "wandb_token": "WANDB_API_KEY"}
MASK = "***"
# Packages the PyTorch image provides; reinstalling them from PyPI could swap the CUDA build.
IMAGE_PROVIDED_PACKAGES = {"torch"}
SDK_TELEMETRY_OFF = {
    "SchemaVersion": "1.0",
    "SageMaker": {"PythonSDK": {"Modules": {"TelemetryOptOut": True}}},
}
FINAL_JOB_STATUSES = ("Completed", "Failed", "Stopped")
SDK_MISSING_FIX = "pip install 'grpokit[sagemaker]' (the SageMaker SDK 3.x and boto3)"


# ----------------------------------------------------------------------------- settings


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
    tags: dict[str, str] = Field(default_factory=dict, description="Tags on the training job.")
    environment: dict[str, str] = Field(default_factory=dict, description="Environment variables in the job.")

    @model_validator(mode="after")
    def _check_spot(self) -> SageMakerSettings:
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
        if first["type"] == "extra_forbidden":
            what = f"unknown key 'sagemaker.{key}'"
            fix = f"valid keys: {', '.join(SageMakerSettings.model_fields)}"
        else:
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


# ----------------------------------------------------------------------------- config


@dataclass(frozen=True)
class LaunchConfig:
    """A config file split into what `grpokit train` reads and the `sagemaker:` section."""

    training_config: dict[str, Any]
    sagemaker_section: dict[str, Any]
    path: Path


def read_launch_config(path: str | Path, overrides: list[str] | None = None) -> LaunchConfig:
    """Read the YAML, apply `--set` overrides (`sagemaker.spot=true` works too) and split it."""
    from grpokit.config import apply_overrides, read_yaml_file

    raw = apply_overrides(read_yaml_file(path), overrides or [])
    section = raw.pop("sagemaker", None) or {}
    if not isinstance(section, dict):
        raise ConfigError(
            "sagemaker: must be a mapping of settings", where=str(path), fix="see docs/sagemaker.md"
        )
    return LaunchConfig(training_config=raw, sagemaker_section=section, path=Path(path))


def validate_training_config(launch_config: LaunchConfig):
    """Check the training config as `grpokit train` will in the job; raises `GrpokitError`.

    TRL checks some options against this machine (bf16 on a CPU), so the check runs with this
    machine's CPU fallbacks, silently: the job gets the config as written, not the fallbacks.
    """
    from grpokit.config import load_config

    config_logger = logging.getLogger("grpokit.config")
    was_disabled, config_logger.disabled = config_logger.disabled, True
    try:
        return load_config(data=copy.deepcopy(launch_config.training_config))
    except GrpokitError as error:
        error.where = (error.where or "<config>").replace("<config>", str(launch_config.path))
        raise
    finally:
        config_logger.disabled = was_disabled


# ----------------------------------------------------------------------------- the job plan


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


def is_s3_uri(value: str) -> bool:
    return value.startswith("s3://")


def channel_source(value: str, *, option: str, cwd: Path) -> str:
    """An S3 URI as is, else the absolute local path (which must exist; it is uploaded)."""
    if is_s3_uri(value):
        return value
    path = (cwd / value).resolve()
    if not path.exists():
        raise DataError(
            f"{option}: {value} does not exist on this machine, so it cannot be uploaded",
            where=option,
            fix="give a local file or directory (it is uploaded as a channel), or an s3:// URI (passed through)",
        )
    return str(path)


@dataclass(frozen=True)
class JobPlan:
    """Everything the training job needs, before anything is written or uploaded."""

    settings: SageMakerSettings
    image_uri: str
    container_config: dict[str, Any]  # the config the job reads: container paths, no secrets
    channels: dict[
        str, str
    ]  # name -> local path (uploaded) or s3:// URI; the config channel is added when staged
    reward_files: dict[str, Path]  # path inside the config channel -> local file
    environment: dict[str, str]
    hyperparameters: dict[str, str]
    requirements: list[str]


def plan_job(
    training_config: Mapping[str, Any], settings: SageMakerSettings, *, config_dir: Path, cwd: Path
) -> JobPlan:
    """Turn a training config and settings into a `JobPlan`. Reads only to check local paths exist.

    Raises `ConfigError` (no region, a secret with no environment variable), `DataError` (a missing
    local dataset), `RewardConfigError` (a missing reward file).
    """
    if not settings.region:
        raise ConfigError(
            "no AWS region", fix="pass --region, set sagemaker.region in the config, or export AWS_REGION"
        )
    container_config = copy.deepcopy(dict(training_config))
    environment = secrets_to_environment(container_config)
    channels = data_channels(container_config, cwd=cwd)
    reward_files = ship_reward_files(container_config, config_dir=config_dir)
    container_config["output_dir"] = CONTAINER_MODEL_DIR
    container_config["checkpoint_dir"] = CONTAINER_CHECKPOINT_DIR
    return JobPlan(
        settings=settings,
        image_uri=settings.image_uri or default_image_uri(settings.region, settings.instance_type),
        container_config=container_config,
        channels=channels,
        reward_files=reward_files,
        environment={**environment, **settings.environment},
        hyperparameters={CONFIG_HYPERPARAMETER: CONTAINER_CONFIG_PATH},
        requirements=requirement_lines(container_config),
    )


def secrets_to_environment(container_config: dict[str, Any]) -> dict[str, str]:
    """Remove secrets from the config (it is uploaded to S3) and return them as environment variables."""
    from grpokit.config import is_secret_key

    environment: dict[str, str] = {}
    for key in [k for k in container_config if is_secret_key(str(k))]:
        value = container_config.pop(key)
        if value in (None, ""):
            continue
        if key not in SECRET_ENVIRONMENT:
            raise ConfigError(
                f"'{key}' looks like a secret and would be uploaded to S3 with the config",
                fix="remove it from the config and pass it to the job with --env NAME=VALUE",
            )
        environment[SECRET_ENVIRONMENT[key]] = str(value)
    return environment


def data_channels(container_config: dict[str, Any], *, cwd: Path) -> dict[str, str]:
    """The data (and model) channels; points the config at their container directories."""
    channels = {
        TRAIN_CHANNEL: channel_source(
            str(container_config["train_dataset_path"]), option="train_dataset_path", cwd=cwd
        )
    }
    container_config["train_dataset_path"] = f"{CHANNEL_ROOT}/{TRAIN_CHANNEL}"
    if container_config.get("test_dataset_path"):
        channels[TEST_CHANNEL] = channel_source(
            str(container_config["test_dataset_path"]), option="test_dataset_path", cwd=cwd
        )
        container_config["test_dataset_path"] = f"{CHANNEL_ROOT}/{TEST_CHANNEL}"
    model_id = str(container_config["model_id"])
    if is_s3_uri(model_id) or (cwd / model_id).is_dir():
        channels[MODEL_CHANNEL] = channel_source(model_id, option="model_id", cwd=cwd)
        container_config["model_id"] = f"{CHANNEL_ROOT}/{MODEL_CHANNEL}"
    return channels


def ship_reward_files(container_config: dict[str, Any], *, config_dir: Path) -> dict[str, Path]:
    """User rewards named `file.py:function` travel in the config channel under `rewards/`."""
    files: dict[str, Path] = {}
    for spec in container_config.get("rewards") or []:
        name = spec if isinstance(spec, str) else spec.get("name", "") if isinstance(spec, dict) else ""
        file_part, sep, function = name.rpartition(":")
        if not sep or not file_part.endswith(".py"):
            continue  # a built-in or a dotted module path: nothing to ship
        local = (config_dir / file_part).resolve()
        if not local.is_file():
            raise RewardConfigError(
                f"reward file {file_part} not found",
                where=str(local),
                fix="fix the path (relative to the config file)",
            )
        shipped = f"{REWARDS_SUBDIR}/{local.name}"
        if files.get(shipped, local) != local:
            raise RewardConfigError(f"two reward files are both named {local.name}", fix="rename one of them")
        files[shipped] = local
        new_name = f"{shipped}:{function}"
        container_config["rewards"] = [
            (
                new_name
                if s == name
                else {**s, "name": new_name}
                if isinstance(s, dict) and s.get("name") == name
                else s
            )
            for s in container_config["rewards"]
        ]
    return files


def requirement_lines(container_config: Mapping[str, Any]) -> list[str]:
    """grpokit's dependencies for the job, pinned to the versions this machine runs (torch comes with the image)."""
    from packaging.requirements import Requirement

    try:
        declared = [Requirement(text) for text in importlib.metadata.requires("grpokit") or []]
    except importlib.metadata.PackageNotFoundError:
        raise RunError(
            "grpokit is not installed, so its dependencies cannot be listed for the job",
            fix="pip install -e .",
        ) from None
    optional_wanted = {name for name, needed in _optional_packages_needed(container_config).items() if needed}
    lines = [
        _pinned(requirement)
        for requirement in declared
        if requirement.name not in IMAGE_PROVIDED_PACKAGES
        and (requirement.marker is None or requirement.name in optional_wanted)
    ]
    return sorted(set(lines), key=str.lower)


def _optional_packages_needed(container_config: Mapping[str, Any]) -> dict[str, bool]:
    mlflow_uri = str(container_config.get("mlflow_uri") or "")
    return {
        "mlflow": bool(mlflow_uri),
        "sagemaker-mlflow": mlflow_uri.startswith("arn:aws:sagemaker:"),
        "boto3": mlflow_uri.startswith("arn:aws:sagemaker:"),
        "wandb": bool(container_config.get("wandb_project")),
        "bitsandbytes": bool(container_config.get("load_in_4bit")),
        "vllm": bool(container_config.get("use_vllm")),
    }


def _pinned(requirement) -> str:
    try:
        return f"{requirement.name}=={importlib.metadata.version(requirement.name)}"
    except importlib.metadata.PackageNotFoundError:
        return f"{requirement.name}{requirement.specifier}"


ENTRY_SCRIPT_TEXT = '''\
"""Run by SageMaker under torchrun: `grpokit train <config>` with the grpokit shipped next to this file.

Generated by `grpokit launch sagemaker`; the SDK calls it as `grpokit_entry.py --config <path>`.
"""

import argparse
import sys
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

parser = argparse.ArgumentParser()
parser.add_argument("--config", required=True)
arguments, _ = parser.parse_known_args()
sys.argv = ["grpokit", "train", arguments.config]

try:
    from grpokit.cli import main

    main()
except SystemExit:
    raise
except BaseException as error:  # a crash grpokit did not report itself: give SageMaker its reason
    from grpokit.sagemaker_env import write_failure

    write_failure(f"{type(error).__name__}: {error}\\n{traceback.format_exc()[-600:]}")
    raise
'''


# ----------------------------------------------------------------------------- staging (local files)


@dataclass(frozen=True)
class StagedJob:
    """The local directories the job's `config` and `code` channels are uploaded from."""

    config_dir: Path
    code_dir: Path


def stage_job_files(plan: JobPlan, staging_dir: Path) -> StagedJob:
    """Write the config channel and the code directory under `staging_dir`."""
    import grpokit

    config_dir, code_dir = staging_dir / CONFIG_CHANNEL, staging_dir / "code"
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / CONFIG_FILE_NAME).write_text(
        yaml.safe_dump(plan.container_config, sort_keys=False, allow_unicode=True), encoding="utf-8"
    )
    for shipped, local in plan.reward_files.items():
        (config_dir / shipped).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(local, config_dir / shipped)
    package_dir = Path(grpokit.__file__).resolve().parent
    shutil.copytree(
        package_dir,
        code_dir / "grpokit",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
        dirs_exist_ok=True,
    )
    (code_dir / REQUIREMENTS_FILE).write_text("\n".join(plan.requirements) + "\n", encoding="utf-8")
    (code_dir / ENTRY_SCRIPT).write_text(ENTRY_SCRIPT_TEXT, encoding="utf-8")
    return StagedJob(config_dir=config_dir, code_dir=code_dir)


# ----------------------------------------------------------------------------- the SDK's ModelTrainer


def _import_sdk():
    try:
        from sagemaker.train import ModelTrainer  # noqa: F401
    except ImportError:
        raise GrpokitError("the SageMaker SDK is not installed", fix=SDK_MISSING_FIX) from None


def build_model_trainer(plan: JobPlan, staged: StagedJob, session, *, trainer_class=None):
    """The SDK's `ModelTrainer` for the plan: torchrun, checkpoints to S3, output to /opt/ml/model."""
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
            source_dir=str(staged.code_dir), requirements=REQUIREMENTS_FILE, entry_script=ENTRY_SCRIPT
        ),
        distributed=Torchrun(),
        compute=Compute(
            instance_type=settings.instance_type,
            instance_count=settings.instance_count,
            volume_size_in_gb=settings.volume_size_gb,
            enable_managed_spot_training=settings.spot or None,
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


def _session_class(offline: bool):
    from sagemaker.core.helper.session_helper import Session

    if not offline:
        return Session

    class OfflineSession(Session):
        """Names S3 locations without touching S3: the dry-run's session."""

        def default_bucket(self):
            return self._default_bucket_name_override

        def upload_data(self, path, bucket=None, key_prefix="data", callback=None, extra_args=None):
            uri = f"s3://{bucket or self.default_bucket()}/{key_prefix}"
            return uri if os.path.isdir(path) else f"{uri}/{os.path.basename(path)}"

    return OfflineSession


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
    return _session_class(offline)(
        boto_session=boto_session,
        default_bucket=settings.bucket,
        default_bucket_prefix=settings.prefix_path or None,
        sagemaker_config=SDK_TELEMETRY_OFF,
    )


def _offline_trainer_class():
    from sagemaker.train import ModelTrainer

    class OfflineModelTrainer(ModelTrainer):
        # The SDK asks IAM whether the role may write the default bucket; a dry run asks nobody.
        def _resolve_staging_bucket(self):
            return self.sagemaker_session.default_bucket(), None

    return OfflineModelTrainer


def training_job_request(plan: JobPlan, staged: StagedJob) -> dict[str, Any]:
    """The CreateTrainingJob request the launch would send, built offline; secrets in it masked.

    Uses the SDK's own request builder (`_create_training_job_args`, private in SDK 3.27), so what
    is printed is what `ModelTrainer.train` sends, with would-be S3 URIs and nothing uploaded.
    """
    session = make_session(plan.settings, offline=True)
    role = plan.settings.role or "arn:aws:iam::000000000000:role/REPLACE-WITH-YOUR-SAGEMAKER-ROLE"
    with _role_validation_skipped():
        dry_plan = dataclasses.replace(plan, settings=plan.settings.model_copy(update={"role": role}))
        trainer = build_model_trainer(dry_plan, staged, session, trainer_class=_offline_trainer_class())
        request = trainer._create_training_job_args(boto3=True)
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
    from grpokit.config import is_secret_key

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
    job = trainer._latest_training_job  # SDK 3.27: the TrainingJob that train() created
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


# ----------------------------------------------------------------------------- one call for the CLI


def prepare_launch(
    config_path: str | Path, overrides: list[str], flags: Mapping[str, Any], *, cwd: Path | None = None
) -> JobPlan:
    """Read and check the config and settings, and plan the job (nothing written, nothing sent)."""
    launch_config = read_launch_config(config_path, overrides)
    settings = resolve_settings(launch_config.sagemaker_section, flags, source=str(config_path))
    validate_training_config(launch_config)
    return plan_job(
        launch_config.training_config,
        settings,
        config_dir=launch_config.path.resolve().parent,
        cwd=cwd or Path.cwd(),
    )
