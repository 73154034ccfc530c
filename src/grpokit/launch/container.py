"""Inside a SageMaker training container: where inputs, the model and checkpoints go.

SageMaker tells the training script its layout through environment variables (`SM_CHANNEL_<NAME>`,
`SM_MODEL_DIR`, `SM_OUTPUT_FAILURE`, ...). When `grpokit train` runs there, the config's paths are
mapped onto that layout, so one config file works on a laptop and in a job:

| option               | in the container                                   |
|----------------------|----------------------------------------------------|
| `train_dataset_path` | `$SM_CHANNEL_TRAIN` (when that channel exists)     |
| `test_dataset_path`  | `$SM_CHANNEL_TEST` (when that channel exists)      |
| `output_dir`         | `$SM_MODEL_DIR` (uploaded as model.tar.gz)         |
| `checkpoint_dir`     | `$GRPOKIT_SM_CHECKPOINT_DIR`, default `/opt/ml/checkpoints` (synced to S3) |

A path already inside its target (an AWS-sample config that says `/opt/ml/input/data/train/`, or a
file inside the channel) is kept as written. With `resume: auto` (the default) a job resumes from
the last complete checkpoint in the checkpoint directory, which SageMaker fills from
`CheckpointConfig.S3Uri` at job start: a spot restart, or a new job given the same checkpoint URI,
continues where the last one stopped.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# Any of these means "running as a SageMaker training job" (the platform and the training toolkit set them).
SAGEMAKER_MARKERS = ("SM_MODEL_DIR", "SM_CHANNELS", "SM_TRAINING_ENV", "TRAINING_JOB_NAME")
CHECKPOINT_ROOT_ENV = "GRPOKIT_SM_CHECKPOINT_DIR"  # tests point it at a temporary directory
DEFAULT_CHECKPOINT_ROOT = "/opt/ml/checkpoints"  # CheckpointConfig.LocalPath, synced to S3
DEFAULT_FAILURE_FILE = "/opt/ml/output/failure"
MAX_FAILURE_REASON_CHARS = 1024  # DescribeTrainingJob's FailureReason is cut at this length

# option -> environment variable holding the container's directory for it
CHANNEL_OPTIONS = {"train_dataset_path": "SM_CHANNEL_TRAIN", "test_dataset_path": "SM_CHANNEL_TEST"}


def in_sagemaker(env: Mapping[str, str] = os.environ) -> bool:
    """True when the process runs inside a SageMaker training job."""
    return any(env.get(name) for name in SAGEMAKER_MARKERS)


def checkpoint_root(env: Mapping[str, str] = os.environ) -> str:
    """The container directory SageMaker syncs with `CheckpointConfig.S3Uri`."""
    return env.get(CHECKPOINT_ROOT_ENV) or DEFAULT_CHECKPOINT_ROOT


def _is_within(path: str | None, directory: str) -> bool:
    if not path:
        return False
    resolved, root = os.path.normpath(os.path.abspath(path)), os.path.normpath(os.path.abspath(directory))
    return resolved == root or resolved.startswith(root + os.sep)


def _option(options: Any, name: str) -> Any:
    return options.get(name) if isinstance(options, Mapping) else getattr(options, name, None)


def sagemaker_paths(options: Any, env: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The options to change so the run uses the container's layout; empty outside SageMaker.

    `options` is a `GrpokitOptions` or a plain config mapping. A value already inside its target
    directory is left alone.
    """
    if not in_sagemaker(env):
        return {}
    targets: dict[str, str] = {}
    for option, variable in CHANNEL_OPTIONS.items():
        if env.get(variable):
            targets[option] = env[variable]
    if env.get("SM_MODEL_DIR"):
        targets["output_dir"] = env["SM_MODEL_DIR"]
    targets["checkpoint_dir"] = checkpoint_root(env)
    return {
        option: target
        for option, target in targets.items()
        if not _is_within(_option(options, option), target)
    }


def sagemaker_overrides(options: Any, env: Mapping[str, str] = os.environ) -> list[str]:
    """`sagemaker_paths` as `--set KEY=VALUE` overrides for `load_config(path, overrides)`."""
    return [f"{option}={target}" for option, target in sagemaker_paths(options, env).items()]


def failure_file(env: Mapping[str, str] = os.environ) -> Path | None:
    """Where SageMaker reads the failure reason; None outside SageMaker."""
    if env.get("SM_OUTPUT_FAILURE"):
        return Path(env["SM_OUTPUT_FAILURE"])
    return Path(DEFAULT_FAILURE_FILE) if in_sagemaker(env) else None


def write_failure(message: str, env: Mapping[str, str] = os.environ) -> Path | None:
    """Write `message` where DescribeTrainingJob shows it as FailureReason. Returns the file, or None.

    Does nothing outside SageMaker. The first failure written wins (a later rank's "a peer died" is
    less useful than the original error); the text is cut to SageMaker's 1024 characters.
    """
    target = failure_file(env)
    if target is None:
        return None
    try:
        if target.exists() and target.stat().st_size > 0:
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(message.strip()[:MAX_FAILURE_REASON_CHARS] + "\n", encoding="utf-8")
    except OSError:
        return None  # reporting the failure must never hide the failure itself
    return target
