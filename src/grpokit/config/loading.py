"""Loading a config: YAML file < `--set` overrides, keys split into grpokit's and TRL's, every check at load time.

A config is read once per process and resolved once:

1. `read_config(path, overrides)` reads the YAML file and applies the `--set` overrides: a
   `ConfigFile`. What runs before the config is resolved (the `grpokit train` launcher reading an
   accelerate file's process count, the SageMaker paths of a job) reads this object, not the file.
2. `resolve_config(file)` rejects unknown keys (naming the closest valid one, in nested sections too),
   type-checks grpokit's options with their schema and TRL's fields against TRL's annotations,
   applies the CPU fallbacks and the `distributed:` setup, checks the batch arithmetic with TRL's own
   rules for the job's process count, and builds TRL's `GRPOConfig` once, reward weights included:
   a frozen `RunConfig` that every later stage receives.

`load_config(path, overrides)` does both.
"""

from __future__ import annotations

import datetime
import functools
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml
from pydantic import ValidationError

from grpokit.config.agents import check_agent_keys, resolve_chat_template
from grpokit.config.distributed import (
    DistributedSetup,
    apply_distributed,
    log_on_main_process,
    resolve_distributed,
)
from grpokit.config.fallbacks import cpu_fallbacks, cpu_trl_settings, cuda_available
from grpokit.config.inert import inert_options
from grpokit.config.launch_keys import (
    LAUNCH_KEYS,
    LaunchKeys,
    accelerate_launch_key_error,
    launch_overrides,
    read_launch_keys,
)
from grpokit.config.migration import read_foreign_keys, split_release_fields, split_trl_cli_keys
from grpokit.config.old_fields import old_release_key_error
from grpokit.config.overrides import Override, apply_to_trl_args, changed_options, lines
from grpokit.config.packages import check_packages
from grpokit.config.rewards import reward_model_trust_overrides, run_reward_specs
from grpokit.config.schema import TRAINING_DATA_SOURCES, GrpokitOptions, RunConfig
from grpokit.config.trl_cli import refused_parser_key, trl_cli_keys
from grpokit.config.trl_fields import (
    GRPOKIT_TRL_DEFAULTS,
    build_grpo_config,
    check_batch_arithmetic,
    check_trl_value,
    trl_field_names,
    world_size_from_env,
)
from grpokit.config.value_rules import (
    check_documented_choices,
    check_evaluation_data,
    check_optimizer_and_schedule,
    check_reference_model_sync,
    check_training_length,
)
from grpokit.config.yaml_file import read_yaml_file  # re-exported: grpokit.config.loading.read_yaml_file
from grpokit.errors import ConfigError, config_error_from_validation, unknown_key_error
from grpokit.secrets import remember_secrets_in

OVERRIDES_NOTE = " (with --set overrides)"
DISTRIBUTED_KEYS = ("distributed", "accelerate_config")  # the keys that name the distributed setup's file
logger = logging.getLogger("grpokit.config")


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
            raise (
                refused_parser_key(key, source)
                or old_release_key_error(key, source)
                or accelerate_launch_key_error(key, source)
                or unknown_key_error(key, own_keys() | set(trl_fields) | trl_cli_keys() | set(LAUNCH_KEYS), source)
            )
    return ours, theirs


def check_trl_values(theirs: dict[str, Any], source: str) -> dict[str, Any]:
    """TRL's fields with each value checked against the type TRL declares (this imports TRL)."""
    return {key: check_trl_value(key, value, source) for key, value in theirs.items()}


# ----------------------------------------------------------------------------- the file, read once


@dataclass(frozen=True)
class ConfigFile:
    """A config as read, once per process: the YAML mapping with the `--set` overrides applied.

    `path` is None for a mapping given in code (`load_config(data=...)`); relative paths in it then
    start at `base_dir`, the current directory.
    """

    data: Mapping[str, Any]
    path: Path | None = None
    overridden: bool = False
    base_dir: Path = field(default_factory=Path.cwd)

    @property
    def source(self) -> str:
        """How messages name the config: its path, and whether `--set` changed it."""
        return (str(self.path) if self.path is not None else "<config>") + (OVERRIDES_NOTE if self.overridden else "")

    def with_overrides(self, overrides: list[str]) -> ConfigFile:
        """This config with more `KEY=VALUE` overrides applied (after the ones it has)."""
        if not overrides:
            return self
        changed = ConfigFile(apply_overrides(dict(self.data), overrides), self.path, True, self.base_dir)
        if "distributed_setup" in self.__dict__ and all(changed.data.get(k) == self.data.get(k) for k in DISTRIBUTED_KEYS):
            changed.__dict__["distributed_setup"] = self.distributed_setup  # its file was read already
        return changed

    @functools.cached_property
    def launch(self) -> LaunchKeys:
        """`trl grpo`'s launch keys (`num_processes`, `accelerate_config`, ...), read once: see `config.launch_keys`.

        Raises:
            ConfigError: a bad count or port, or an `accelerate_config` that names nothing.
        """
        return read_launch_keys(self.data, self.base_dir, self.source)

    @property
    def distributed_value(self) -> str | None:
        """`distributed:`, or what `accelerate_config` (`trl grpo`'s key) names; None when neither is set.

        Raises:
            ConfigError: both are set, to different files.
        """
        value = self.data.get("distributed")
        from_trl = self.launch.accelerate_config
        if value is not None and from_trl is not None and value != from_trl:
            raise ConfigError(
                f"distributed: {value!r} and accelerate_config: {self.data.get('accelerate_config')!r} are both set",
                where=self.source,
                fix="keep one: accelerate_config (trl grpo's key) is read as distributed:",
            )
        return value if value is not None else from_trl

    @functools.cached_property
    def distributed_setup(self) -> DistributedSetup | None:
        """The `distributed:` value resolved (its file read once per process); None when it is not set.

        Raises:
            ConfigError: the value names no preset and no readable file (see `resolve_distributed`).
        """
        value = self.distributed_value
        if not isinstance(value, str):
            return None
        return resolve_distributed(value, self.base_dir, self.source)


def read_config(
    path: str | Path | None = None, overrides: list[str] | None = None, *, data: Mapping[str, Any] | None = None
) -> ConfigFile:
    """Read the YAML file at `path` (or take `data`) and apply `overrides`: the config as written.

    Raises:
        ConfigError: the file cannot be read as a YAML mapping (see `read_yaml_file`), or an override
            is not `KEY=VALUE`.
    """
    if path is None:
        file = ConfigFile(dict(data or {}))
    else:
        file = ConfigFile(read_yaml_file(path), Path(path), base_dir=Path(path).resolve().parent)
    return file.with_overrides(list(overrides or []))


# ----------------------------------------------------------------------------- resolving


@dataclass
class _Resolving:
    """A config while `resolve_config` resolves it: the only time its parts change."""

    options: GrpokitOptions
    trl_args: dict[str, Any]
    source: str
    base_dir: Path
    trl_origins: dict[str, str]
    distributed: DistributedSetup | None
    overrides: list[Override] = field(default_factory=list)

    def apply(self, overrides: list[Override]) -> None:
        """Apply the overrides a step decided (`config.overrides`), and keep them for the record."""
        options = changed_options(overrides)
        if options:
            self.options = self.options.model_copy(update=options)
        if "distributed" in options:  # the sharding fallback: ddp instead of the file's FSDP / DeepSpeed
            self.distributed = resolve_distributed(options["distributed"], self.base_dir, self.source)
        apply_to_trl_args(overrides, self.trl_args)
        self.overrides += overrides


def resolve_config(file: ConfigFile, *, cuda_available: bool | None = None, world_size: int | None = None) -> RunConfig:
    """Resolve a read config into the frozen `RunConfig` the pipeline reads.

    `world_size` (default: `WORLD_SIZE` from the environment) lets a launcher check a config for the
    job it is about to start; TRL's `GRPOConfig` of this process is then not built (the job builds
    its own, since TRL measures the world of the process it runs in).

    Every value the run does not use as written (the CPU fallbacks, what the `distributed:` setup or an
    inert option leaves unused) is one `Override` in `RunConfig.overrides`, logged here once.

    Raises `ConfigError` naming the key, the file and a fix for unknown keys, wrong types, missing
    required keys, impossible batch arithmetic and options TRL rejects.
    """
    source = file.source
    raw = dict(file.data)
    remember_secrets_in(raw)  # masked in every log line and error message from here on
    raw_keys = {str(key) for key in raw}
    launch = file.launch  # trl grpo's `accelerate launch` keys: the CLI read them to start the job
    raw = {key: value for key, value in raw.items() if key not in LAUNCH_KEYS}
    raw, cli_keys = split_trl_cli_keys(raw, own_keys(), trl_field_names())  # trl grpo's ModelConfig / ScriptArguments keys
    raw, old_fields = split_release_fields(raw, own_keys() | set(trl_field_names()), source)  # fields of `trl_defaults:`'s TRL
    ours, theirs = split_keys(raw, source)
    if file.distributed_value is not None:
        ours["distributed"] = file.distributed_value  # accelerate_config: read as distributed:
    # trl grpo keys -> grpokit options, `trl_defaults: <version>`, the AWS sample's flat keys (config.migration)
    foreign = read_foreign_keys(
        raw_keys, cli_keys, ours, theirs, option_names=own_keys(), trl_fields=trl_field_names(), source=source, old_fields=old_fields
    )
    try:
        options = GrpokitOptions(**foreign.ours)
    except ValidationError as error:
        raise config_error_from_validation(error, source, model=GrpokitOptions) from None
    theirs = check_trl_values(foreign.theirs, source)  # the first step that imports TRL
    trl_args = foreign.trl_args(GRPOKIT_TRL_DEFAULTS, theirs)
    reward_specs = run_reward_specs(
        options.rewards,
        options.reward_model_name_or_path,
        reward_weights=trl_args.pop("reward_weights", None),
        source=source,
        has_environment=options.environment is not None,
    )
    options = _resolve_agent_keys(options, trl_args, file.base_dir, source)
    loaded_trl_args = dict(trl_args)
    has_cuda = _cuda_available() if cuda_available is None else cuda_available
    config = _Resolving(
        options=options,
        trl_args=trl_args,
        source=source,
        base_dir=file.base_dir,
        trl_origins=foreign.origins(loaded_trl_args, loaded_trl_args, GRPOKIT_TRL_DEFAULTS),
        distributed=file.distributed_setup if options.distributed is not None else None,  # read once per process
    )
    config.apply(foreign.overrides)  # fields of an older TRL release: mapped, or acting on nothing
    if not has_cuda:
        config.apply(cpu_fallbacks(config.options, trl_args, theirs))
        trl_args.update(cpu_trl_settings(trl_args))
    processes = world_size_from_env() if world_size is None else world_size
    config.apply(apply_distributed(config, has_cuda=has_cuda, world_size=processes))
    config.apply(launch_overrides(launch, world_size=processes))
    check_packages(config.options, trl_args, config.distributed, has_cuda=has_cuda, source=source)
    config.apply(inert_options(config.options, trl_args))
    config.apply(reward_model_trust_overrides(reward_specs, config.options.trust_remote_code))
    config.trl_origins = foreign.origins(loaded_trl_args, trl_args, GRPOKIT_TRL_DEFAULTS, config.trl_origins)
    check_evaluation_data(config.options, trl_args, source)  # before the eval batch rule, which needs eval data to mean anything
    check_batch_arithmetic(trl_args, world_size=processes, source=source)
    check_documented_choices(trl_args, source)  # values TRL only looks at once the model is loaded
    check_training_length(trl_args, source)
    check_reference_model_sync(config.options, trl_args, source)
    log_on_main_process(logger, lines(config.overrides))
    resolved = RunConfig(
        options=config.options,
        trl_args=MappingProxyType(trl_args),
        source=source,
        base_dir=config.base_dir,
        distributed=config.distributed,
        reward_specs=reward_specs,
        overrides=tuple(config.overrides),
        trl_origins=MappingProxyType(config.trl_origins),
    )
    if world_size is not None:
        return resolved
    # TRL's GRPOConfig of this process, built once: TRL validates it here, at load, and every stage reads it
    grpo_config = build_grpo_config(
        resolved.grpo_config_kwargs(), output_dir=config.options.resolved_checkpoint_dir, source=source
    )
    check_optimizer_and_schedule(grpo_config, trl_args, source)
    return replace(resolved, grpo_config=grpo_config)


def _resolve_agent_keys(options: GrpokitOptions, trl_args: Mapping[str, Any], base_dir: Path, source: str) -> GrpokitOptions:
    """The agent keys' rules between fields; `chat_template:` made an absolute file path (read by `load_tokenizer`)."""
    has_dataset = any(getattr(options, name) is not None for name in TRAINING_DATA_SOURCES)
    check_agent_keys(
        options, trl_args, has_dataset=has_dataset, dynamic_sampling=options.dynamic_sampling.enabled, source=source
    )
    if options.chat_template is None:
        return options
    return options.model_copy(update={"chat_template": resolve_chat_template(options.chat_template, base_dir, source)})


def load_config(
    path: str | Path | None = None,
    overrides: list[str] | None = None,
    *,
    data: dict[str, Any] | None = None,
    cuda_available: bool | None = None,
    world_size: int | None = None,
) -> RunConfig:
    """Load and validate a config: defaults < YAML file (`path` or `data`) < `overrides`.

    `read_config` then `resolve_config` (see them for `world_size` and the errors raised).
    """
    return resolve_config(read_config(path, overrides, data=data), cuda_available=cuda_available, world_size=world_size)


_cuda_available = cuda_available  # `resolve_config(cuda_available=...)` shadows the function's name
