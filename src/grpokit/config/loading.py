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
from grpokit.config.migration import read_foreign_keys, split_trl_cli_keys
from grpokit.config.schema import GrpokitOptions, RunConfig
from grpokit.config.trl_cli import trl_cli_keys
from grpokit.config.trl_fields import (
    GRPOKIT_TRL_DEFAULTS,
    check_batch_arithmetic,
    check_trl_value,
    trl_field_names,
    world_size_from_env,
)
from grpokit.config.value_rules import (
    check_documented_choices,
    check_optimizer_and_schedule,
    check_training_length,
)
from grpokit.config.yaml_file import read_yaml_file  # re-exported: grpokit.config.loading.read_yaml_file
from grpokit.errors import ConfigError, config_error_from_validation, unknown_key_error
from grpokit.outputs.files import CONFIG_FILE, atomic_write_text
from grpokit.secrets import remember_secrets_in


def own_keys() -> set[str]:
    return set(GrpokitOptions.model_fields)


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
    """Split a flat mapping into grpokit's options and TRL's fields; unknown keys are an error.

    Only names are checked here, against TRL's field names read from its source, so an unknown key
    is reported before TRL or torch is imported; `check_trl_values` checks the values' types.
    """
    ours, theirs = {}, {}
    trl_fields = trl_field_names()
    for key, value in data.items():
        key = str(key)
        if key in own_keys():
            ours[key] = value
        elif key in trl_fields:
            theirs[key] = value
        else:
            raise unknown_key_error(key, own_keys() | set(trl_fields) | trl_cli_keys(), source)
    return ours, theirs


def check_trl_values(theirs: dict[str, Any], source: str) -> dict[str, Any]:
    """TRL's fields with each value checked against the type TRL declares (this imports TRL)."""
    return {key: check_trl_value(key, value, source) for key, value in theirs.items()}


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
    raw_keys = {str(key) for key in raw}
    raw, cli_keys = split_trl_cli_keys(raw, own_keys(), trl_field_names())  # trl grpo's ModelConfig / ScriptArguments keys
    ours, theirs = split_keys(raw, source)
    # trl grpo keys -> grpokit options, `trl_defaults: <version>`, the AWS sample's flat keys (config.migration)
    foreign = read_foreign_keys(
        raw_keys, cli_keys, ours, theirs, option_names=own_keys(), trl_fields=trl_field_names(), source=source
    )
    ours, theirs = foreign.ours, foreign.theirs
    try:
        options = GrpokitOptions(**ours)
    except ValidationError as error:
        raise config_error_from_validation(error, source, model=GrpokitOptions) from None
    theirs = check_trl_values(theirs, source)  # the first step that imports TRL
    trl_args = foreign.trl_args(GRPOKIT_TRL_DEFAULTS, theirs)
    loaded_trl_args = dict(trl_args)
    has_cuda = _cuda_available() if cuda_available is None else cuda_available
    fallback_warnings = apply_cpu_fallbacks(options, trl_args, theirs, has_cuda=has_cuda)
    config = RunConfig(
        options=options,
        trl_args=trl_args,
        source=source,
        base_dir=Path(path).resolve().parent if path is not None else Path.cwd(),
        fallback_warnings=fallback_warnings,
        trl_origins=foreign.origins(loaded_trl_args, loaded_trl_args, GRPOKIT_TRL_DEFAULTS),
    )
    processes = world_size_from_env() if world_size is None else world_size
    config.fallback_warnings += apply_distributed(config, has_cuda=has_cuda, world_size=processes)
    config.trl_origins = foreign.origins(loaded_trl_args, trl_args, GRPOKIT_TRL_DEFAULTS, config.trl_origins)
    check_batch_arithmetic(trl_args, world_size=processes, source=source)
    check_documented_choices(trl_args, source)  # values TRL only looks at once the model is loaded
    check_training_length(trl_args, source)
    if world_size is None:
        grpo_args = config.to_grpo_config()  # TRL's own validation of this process's config, at load time
        check_optimizer_and_schedule(grpo_args, trl_args, source)
    return config


_cuda_available = cuda_available  # `load_config(cuda_available=...)` shadows the function's name


def save_resolved_config(config: RunConfig, directory: str | Path) -> Path:
    """Write `grpokit_config.yaml` (secrets masked) into `directory`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(config.to_yaml_dict(), sort_keys=False, allow_unicode=True)
    return atomic_write_text(directory / CONFIG_FILE, text)
