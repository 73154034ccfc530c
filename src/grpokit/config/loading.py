"""Loading a config: YAML file < `--set` overrides, keys split into grpokit's and TRL's, every check at load time.

`load_config` is the one entry point: it reads the file, applies the overrides, rejects unknown keys
(naming the closest valid one, in nested sections too), type-checks grpokit's options with their
schema and TRL's fields against TRL's annotations, applies the CPU fallbacks and the `distributed:`
preset's checks, checks the batch arithmetic with TRL's own rules for the job's process count, and
finally validates everything by building TRL's `GRPOConfig`.
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from grpokit.config.distributed import apply_distributed
from grpokit.config.fallbacks import apply_cpu_fallbacks, cuda_available
from grpokit.config.schema import GrpokitOptions, RunConfig
from grpokit.config.trl_fields import (
    GRPOKIT_TRL_DEFAULTS,
    check_batch_arithmetic,
    check_trl_value,
    trl_field_types,
    world_size_from_env,
)
from grpokit.errors import ConfigError, config_error_from_validation, unknown_key_error
from grpokit.outputs.files import CONFIG_FILE, atomic_write_text
from grpokit.secrets import remember_secrets_in


def own_keys() -> set[str]:
    return set(GrpokitOptions.model_fields)


def read_yaml_file(path: str | Path) -> dict[str, Any]:
    """The YAML mapping in `path` (`{}` for an empty file).

    Raises:
        ConfigError: the file is missing, is not YAML, or is not a mapping.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}", fix="pass the path of an existing YAML file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ConfigError(f"config file is not valid YAML: {error}", where=str(path)) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file must be a YAML mapping of key: value, got a {type(data).__name__}", where=str(path)
        )
    return data


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse one `--set KEY=VALUE`; the value is read as YAML (numbers, booleans, lists)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set expects KEY=VALUE, got {text!r}", fix="for example --set learning_rate=1e-5")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    if isinstance(value, datetime.date):  # no config value is a date: --set run_name=2024-01-01 means the text
        value = raw.strip()
    return key.strip().split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """`data` with each `--set KEY=VALUE` applied in order; dotted keys reach into sections."""
    merged = dict(data)
    for text in overrides:
        path, value = parse_override(text)
        node = merged
        for part in path[:-1]:
            child = node.get(part)
            node[part] = dict(child) if isinstance(child, dict) else {}
            node = node[part]
        node[path[-1]] = value
    return merged


# ----------------------------------------------------------------------------- keys


def split_keys(data: dict[str, Any], source: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split a flat mapping into grpokit's options and TRL's fields; unknown keys are an error."""
    ours, theirs = {}, {}
    trl_fields = trl_field_types()
    for key, value in data.items():
        key = str(key)
        if key in own_keys():
            ours[key] = value
        elif key in trl_fields:
            theirs[key] = check_trl_value(key, value, source)
        else:
            raise unknown_key_error(key, own_keys() | set(trl_fields), source)
    return ours, theirs


# ----------------------------------------------------------------------------- load_config


def load_config(
    path: str | Path | None = None,
    overrides: list[str] | None = None,
    *,
    data: dict[str, Any] | None = None,
    cuda_available: bool | None = None,
    world_size: int | None = None,
) -> RunConfig:
    """Load and validate a config: defaults < YAML file (`path` or `data`) < `overrides`.

    `world_size` (default: `WORLD_SIZE` from the environment) lets a launcher check a config for the
    job it is about to start; the full `GRPOConfig` of this process is then left to the job, since
    TRL measures the world of the process it runs in.

    Raises `ConfigError` naming the key, the file and a fix for unknown keys, wrong types, missing
    required keys, impossible batch arithmetic and options TRL rejects.
    """
    source = str(path) if path is not None else "<config>"
    raw = read_yaml_file(path) if path is not None else dict(data or {})
    raw = apply_overrides(raw, overrides or [])
    remember_secrets_in(raw)  # masked in every log line and error message from here on
    if overrides:
        source += " (with --set overrides)"
    ours, theirs = split_keys(raw, source)
    try:
        options = GrpokitOptions(**ours)
    except ValidationError as error:
        raise config_error_from_validation(error, source, model=GrpokitOptions) from None
    trl_args = {**GRPOKIT_TRL_DEFAULTS, **theirs}
    has_cuda = _cuda_available() if cuda_available is None else cuda_available
    fallback_warnings = apply_cpu_fallbacks(options, trl_args, theirs, has_cuda=has_cuda)
    config = RunConfig(
        options=options,
        trl_args=trl_args,
        source=source,
        base_dir=Path(path).resolve().parent if path is not None else Path.cwd(),
        fallback_warnings=fallback_warnings,
    )
    processes = world_size_from_env() if world_size is None else world_size
    config.fallback_warnings += apply_distributed(config, has_cuda=has_cuda, world_size=processes)
    check_batch_arithmetic(trl_args, world_size=processes, source=source)
    if world_size is None:
        config.to_grpo_config()  # TRL's own validation of this process's config, at load time
    return config


_cuda_available = cuda_available  # `load_config(cuda_available=...)` shadows the function's name


def save_resolved_config(config: RunConfig, directory: str | Path) -> Path:
    """Write `grpokit_config.yaml` (secrets masked) into `directory`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(config.to_yaml_dict(), sort_keys=False, allow_unicode=True)
    return atomic_write_text(directory / CONFIG_FILE, text)
