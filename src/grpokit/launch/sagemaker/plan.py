"""The job plan: a training config and settings in, everything the job needs out (pure; nothing sent).

In reading order: `read_launch_config` (the YAML plus `--set`, split into the training config and its
`sagemaker:` section), `validate_training_config` (as `grpokit train` would), `plan_job` (channels,
the config the job reads with container paths and no secrets, environment, requirements, image).
"""

from __future__ import annotations

import copy
import importlib.metadata
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grpokit.config.loading import apply_overrides, load_config, read_yaml_file
from grpokit.config.schema import WANDB_TOKEN_PROJECT
from grpokit.errors import ConfigError, DataError, GrpokitError, RewardConfigError, RunError
from grpokit.launch.container import DEFAULT_CHECKPOINT_ROOT
from grpokit.launch.sagemaker.settings import SageMakerSettings, default_image_uri, resolve_settings
from grpokit.secrets import is_secret_key

# The container's layout (SageMaker's fixed paths).
CHANNEL_ROOT = "/opt/ml/input/data"
CONFIG_CHANNEL, TRAIN_CHANNEL, TEST_CHANNEL, MODEL_CHANNEL = "config", "train", "test", "model"
DATASET_CHANNEL = "dataset"  # a local folder named by load_dataset.path (TRL: dataset_name)
CONFIG_FILE_NAME = "grpokit.yaml"
CONTAINER_CONFIG_PATH = f"{CHANNEL_ROOT}/{CONFIG_CHANNEL}/{CONFIG_FILE_NAME}"
CONTAINER_MODEL_DIR = "/opt/ml/model"
CONTAINER_CHECKPOINT_DIR = DEFAULT_CHECKPOINT_ROOT
REWARDS_SUBDIR = "rewards"  # user reward files, inside the config channel
DISTRIBUTED_SUBDIR = "distributed"  # the config's own distributed: file (an accelerate, FSDP or DeepSpeed config)
CONFIG_HYPERPARAMETER = "config"  # the SDK runs `torchrun ... grpokit_entry.py --config <path>`

# Config keys holding secrets that have a standard environment variable; they never reach S3.
SECRET_ENVIRONMENT = {"token": "HF_TOKEN", "hub_token": "HF_TOKEN", "wandb_token": "WANDB_API_KEY"}
# Packages the PyTorch image provides; reinstalling them from PyPI could swap the CUDA build.
IMAGE_PROVIDED_PACKAGES = {"torch"}


# ----------------------------------------------------------------------------- config


@dataclass(frozen=True)
class LaunchConfig:
    """A config file split into what `grpokit train` reads and the `sagemaker:` section."""

    training_config: dict[str, Any]
    sagemaker_section: dict[str, Any]
    path: Path


def read_launch_config(path: str | Path, overrides: list[str] | None = None) -> LaunchConfig:
    """Read the YAML, apply `--set` overrides (`sagemaker.spot=true` works too) and split it."""
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
    config_logger = logging.getLogger("grpokit.config")
    was_disabled, config_logger.disabled = config_logger.disabled, True
    try:
        return load_config(data=copy.deepcopy(launch_config.training_config))
    except GrpokitError as error:
        error.where = (error.where or "<config>").replace("<config>", str(launch_config.path))
        raise
    finally:
        config_logger.disabled = was_disabled


def is_s3_uri(value: str) -> bool:
    return value.startswith("s3://")


def channel_source(value: str, *, option: str, cwd: Path) -> str:
    """An S3 URI as is, else the absolute local path (which must exist; it is uploaded)."""
    if is_s3_uri(value):
        return value
    path = (cwd / value).resolve()
    if not path.exists():
        inside_job = " (a path inside the job: where SageMaker mounts a channel, not an input)" if value.startswith("/opt/ml/") else ""
        raise DataError(
            f"{option}: {value} does not exist on this machine, so it cannot be uploaded{inside_job}",
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
    config_files: dict[str, Path] = field(default_factory=dict)  # path inside the config channel -> local file
    command: str | None = None  # launcher: accelerate: the job's command line (else the SDK's torchrun)


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
    if container_config.get("wandb_token") and not container_config.get("wandb_project"):
        container_config["wandb_project"] = WANDB_TOKEN_PROJECT  # the token turns W&B on; it travels as WANDB_API_KEY
    environment = secrets_to_environment(container_config)
    channels = data_channels(container_config, cwd=cwd)
    reward_files = ship_reward_files(container_config, config_dir=config_dir)
    config_files = ship_distributed_file(container_config, config_dir=config_dir)
    container_config["output_dir"] = CONTAINER_MODEL_DIR
    container_config["checkpoint_dir"] = CONTAINER_CHECKPOINT_DIR
    command = accelerate_command(container_config, settings, config_files) if settings.launcher == "accelerate" else None
    return JobPlan(
        settings=settings,
        image_uri=settings.image_uri or default_image_uri(settings.region, settings.instance_type),
        container_config=container_config,
        channels=channels,
        reward_files=reward_files,
        environment={**environment, **settings.environment},
        hyperparameters={} if command else {CONFIG_HYPERPARAMETER: CONTAINER_CONFIG_PATH},
        requirements=requirement_lines(container_config),
        config_files=config_files,
        command=command,
    )


def secrets_to_environment(container_config: dict[str, Any]) -> dict[str, str]:
    """Remove secrets from the config (it is uploaded to S3) and return them as environment variables."""
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
    channels = _load_dataset_channel(container_config, cwd=cwd)
    if container_config.get("train_dataset_path"):  # else load_dataset / dataset_name (checked at load)
        channels[TRAIN_CHANNEL] = channel_source(
            str(container_config.get("train_dataset_path")), option="train_dataset_path", cwd=cwd
        )
        container_config["train_dataset_path"] = f"{CHANNEL_ROOT}/{TRAIN_CHANNEL}"
    if container_config.get("test_dataset_path"):
        channels[TEST_CHANNEL] = channel_source(
            str(container_config["test_dataset_path"]), option="test_dataset_path", cwd=cwd
        )
        container_config["test_dataset_path"] = f"{CHANNEL_ROOT}/{TEST_CHANNEL}"
    model_key = "model_id" if "model_id" in container_config else "model_name_or_path"  # TRL's name
    model_id = str(container_config.get(model_key))
    if is_s3_uri(model_id) or (cwd / model_id).is_dir():
        channels[MODEL_CHANNEL] = channel_source(model_id, option=model_key, cwd=cwd)
        container_config[model_key] = f"{CHANNEL_ROOT}/{MODEL_CHANNEL}"
    return channels


def _load_dataset_channel(container_config: dict[str, Any], *, cwd: Path) -> dict[str, str]:
    """A local folder named by `load_dataset.path` (or TRL's `dataset_name`) travels as the `dataset` channel.

    A Hub id stays as written: the job downloads it (with HF_TOKEN for a gated one).
    """
    section = container_config.get("load_dataset") if isinstance(container_config.get("load_dataset"), dict) else None
    path = section.get("path") if section else container_config.get("dataset_name")
    if not path or not (cwd / str(path)).is_dir():
        return {}
    target = f"{CHANNEL_ROOT}/{DATASET_CHANNEL}"
    if section:
        container_config["load_dataset"] = {**section, "path": target}
    else:
        container_config["dataset_name"] = target
    return {DATASET_CHANNEL: str((cwd / str(path)).resolve())}


def ship_distributed_file(container_config: dict[str, Any], *, config_dir: Path) -> dict[str, Path]:
    """The config's own `distributed:` file travels in the config channel; a preset name needs nothing."""
    from grpokit.config.distributed import PRESET_FILES

    value = container_config.get("distributed")
    if not isinstance(value, str) or value in PRESET_FILES:
        return {}
    local = Path(value).expanduser()
    local = local if local.is_absolute() else (config_dir / local).resolve()
    if not local.is_file():
        raise ConfigError(f"distributed: {value} not found", where=str(local), fix="fix the path (relative to the config file)")
    shipped = f"{DISTRIBUTED_SUBDIR}/{local.name}"
    container_config["distributed"] = shipped
    return {shipped: local}


def accelerate_command(container_config: dict[str, Any], settings: SageMakerSettings, config_files: dict[str, Path]) -> str:
    """`accelerate launch --config_file <the distributed: file> grpokit_entry.py --config <path>`, as the sample ran.

    Several instances add accelerate's machine options from SageMaker's environment (the job's bash
    expands them). Raises `ConfigError` when `distributed:` is not an accelerate config file.
    """
    from grpokit.config.distributed import resolve_distributed

    value = container_config.get("distributed")
    local = config_files.get(value) if isinstance(value, str) else None
    if local is None or resolve_distributed(str(local), local.parent, str(local)).accelerate is None:
        raise ConfigError(
            "sagemaker.launcher: accelerate needs distributed: to name an accelerate config file",
            fix="set distributed: default_config.yaml (an `accelerate config` file), or use launcher: torchrun",
        )
    command = f"accelerate launch --config_file {CHANNEL_ROOT}/{CONFIG_CHANNEL}/{value}"
    if settings.instance_count > 1:
        command += (
            " --num_machines $SM_HOST_COUNT --machine_rank $SM_CURRENT_HOST_RANK"
            " --main_process_ip $SM_MASTER_ADDR --main_process_port ${SM_MASTER_PORT:-29500}"
        )
    return f"{command} grpokit_entry.py --{CONFIG_HYPERPARAMETER} {CONTAINER_CONFIG_PATH}"


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
        and (requirement.marker is None or ({requirement.name} | requirement.extras) & optional_wanted)
    ]  # an extra of another package (trl[vllm]) is wanted by its extra's name
    return sorted(set(lines), key=str.lower)


def _optional_packages_needed(container_config: Mapping[str, Any]) -> dict[str, bool]:
    mlflow_uri = str(container_config.get("mlflow_uri") or "")
    return {
        "mlflow": bool(mlflow_uri),
        "sagemaker-mlflow": mlflow_uri.startswith("arn:aws:sagemaker:"),
        "boto3": mlflow_uri.startswith("arn:aws:sagemaker:"),
        "wandb": bool(container_config.get("wandb_project")),
        "bitsandbytes": bool(container_config.get("load_in_4bit") or container_config.get("load_in_8bit")),
        "vllm": bool(container_config.get("use_vllm")),
    }


def _pinned(requirement) -> str:
    name = requirement.name + (f"[{','.join(sorted(requirement.extras))}]" if requirement.extras else "")
    try:
        return f"{name}=={importlib.metadata.version(requirement.name)}"
    except importlib.metadata.PackageNotFoundError:
        return f"{name}{requirement.specifier}"


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

