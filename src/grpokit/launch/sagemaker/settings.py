"""Where and how a SageMaker job runs: the settings of a launch, the flags, the image.

`SageMakerSettings` (`grpokit.config.sagemaker`) is the `sagemaker:` section's typed schema:
`load_config` validates it with the rest of the file, the `grpokit launch sagemaker` flags are
generated from it, and `resolve_settings` merges defaults < section < command-line flags for a launch.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from grpokit.config.sagemaker import PYTORCH_DLC_VERSION, SageMakerSettings
from grpokit.errors import ConfigError, config_error_from_validation

# The image's Python build (see PYTORCH_DLC_VERSION in grpokit.config.sagemaker).
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

