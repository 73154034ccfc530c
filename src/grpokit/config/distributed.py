"""Running one config on several processes: the `distributed:` sharding presets and their checks.

`distributed:` names a preset shipped in `grpokit/presets/` or a file of your own:

| value             | file                            | what it sets (TrainingArguments fields)          |
|-------------------|---------------------------------|--------------------------------------------------|
| `ddp`             | `presets/ddp.yaml`              | non-reentrant gradient checkpointing             |
| `fsdp`            | `presets/fsdp.yaml`             | `fsdp`, `fsdp_config` (FSDP1, the QLoRA setup)   |
| `fsdp2`           | `presets/fsdp2.yaml`            | `fsdp`, `fsdp_config` (FSDP2)                    |
| `deepspeed_zero2` | `presets/deepspeed_zero2.json`  | `deepspeed` (ZeRO stage 2)                       |
| `deepspeed_zero3` | `presets/deepspeed_zero3.json`  | `deepspeed` (ZeRO stage 3)                       |
| a path            | relative to the config file     | a preset-style YAML/JSON of TrainingArguments fields, an `accelerate config` YAML, a DeepSpeed JSON or a transformers FSDP JSON |

The preset's fields sit under the config's own: a TRL key written in the config wins. The process
count is not part of a preset: it comes from the launcher (`grpokit train --nproc N`, `torchrun`,
`accelerate launch`), see `grpokit.launch.torchrun` and docs/distributed.md. An `accelerate config`
file is the exception: its `mixed_precision` becomes `fp16` / `bf16`, and its `num_processes` is the
process count `grpokit train` starts (see `grpokit.config.accelerate_file`); a key of it that cannot
be honoured is an error naming it.
"""

from __future__ import annotations

import difflib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import yaml

from grpokit.config.accelerate_file import (
    AccelerateSettings,
    mixed_precision_fields,
    read_accelerate_settings,
)
from grpokit.config.overrides import Override
from grpokit.config.trl_fields import trl_field_types
from grpokit.config.trl_versions import ORIGIN_FILE
from grpokit.errors import ConfigError

logger = logging.getLogger("grpokit.distributed")

PRESET_DIR = Path(__file__).resolve().parent / "presets"
PRESET_FILES: dict[str, str] = {
    "ddp": "ddp.yaml",
    "fsdp": "fsdp.yaml",
    "fsdp2": "fsdp2.yaml",
    "deepspeed_zero2": "deepspeed_zero2.json",
    "deepspeed_zero3": "deepspeed_zero3.json",
}
# transformers' own FSDP JSON (`fsdp_config: path.json`) uses these keys, with or without `fsdp_`.
FSDP_CONFIG_KEYS = {
    "version",
    "reshard_after_forward",
    "auto_wrap_policy",
    "transformer_layer_cls_to_wrap",
    "cpu_offload",
}

Kind = Literal["ddp", "fsdp", "deepspeed"]


@dataclass(frozen=True)
class DistributedSetup:
    """A resolved `distributed:` value: the kind of sharding and the TrainingArguments fields it sets."""

    name: str  # preset name, or the path as written in the config
    kind: Kind
    trl_args: dict[str, Any] = field(default_factory=dict)
    file: Path | None = None
    accelerate: AccelerateSettings | None = None  # an `accelerate config` file: mixed precision, process count


class LoadedConfig(Protocol):
    """What `apply_distributed` reads and changes of a config while `load_config` resolves it."""

    options: Any
    trl_args: dict[str, Any]
    base_dir: Path
    source: str
    trl_origins: dict[str, str]
    distributed: DistributedSetup | None  # `options.distributed` resolved (`resolve_distributed`)


# ----------------------------------------------------------------------------- resolving presets


def preset_path(name: str) -> Path:
    """The shipped file of a preset name (no check that the name exists)."""
    return PRESET_DIR / PRESET_FILES[name]


def resolve_distributed(value: str, base_dir: Path, source: str = "<config>") -> DistributedSetup:
    """Read a preset name or a file path into a `DistributedSetup`.

    Raises `ConfigError` when the name is no preset and no file, or the file cannot be read or says
    nothing grpokit can translate.
    """
    if value in PRESET_FILES:
        path = preset_path(value)
    else:
        path = Path(value).expanduser()
        path = path if path.is_absolute() else base_dir / path
        if not path.is_file():
            suggestion = difflib.get_close_matches(value, list(PRESET_FILES), n=1, cutoff=0.5)
            raise ConfigError(
                f"distributed: {value!r} is neither a preset nor an existing file",
                where=source,
                fix=(f"did you mean '{suggestion[0]}'? " if suggestion else "")
                + f"use one of {', '.join(PRESET_FILES)}, or the path of an accelerate, FSDP or DeepSpeed config file",
            )
    data = _read_mapping(path, source)
    return _classify(value, path, data, source)


def _read_mapping(path: Path, source: str) -> dict[str, Any]:
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        raise ConfigError(f"distributed config {path} cannot be parsed: {error}", where=source) from None
    if not isinstance(data, dict):
        raise ConfigError(f"distributed config {path} must be a mapping of key: value", where=source)
    return data


def _classify(name: str, path: Path, data: dict[str, Any], source: str) -> DistributedSetup:
    if "distributed_type" in data:
        return _from_accelerate_config(name, path, data, source)
    if "zero_optimization" in data:
        return DistributedSetup(name, "deepspeed", {"deepspeed": str(path)}, path)
    if data and set(data) <= set(trl_field_types()):
        args = dict(data)
        if isinstance(args.get("deepspeed"), str):
            args["deepspeed"] = str((path.parent / args["deepspeed"]).resolve())
        kind: Kind = "deepspeed" if args.get("deepspeed") else "fsdp" if args.get("fsdp") else "ddp"
        return DistributedSetup(name, kind, args, path)
    if {key.removeprefix("fsdp_") for key in data} & FSDP_CONFIG_KEYS:
        return DistributedSetup(name, "fsdp", {"fsdp": True, "fsdp_config": dict(data)}, path)
    raise ConfigError(
        f"distributed config {path} is not a file grpokit can read",
        where=source,
        fix="give a preset-style file of TrainingArguments fields (fsdp, fsdp_config, deepspeed, ...), "
        "an `accelerate config` YAML (distributed_type: ...), a DeepSpeed JSON (zero_optimization) or an FSDP JSON",
    )


def _from_accelerate_config(name: str, path: Path, data: dict[str, Any], source: str) -> DistributedSetup:
    """Translate an `accelerate config` file: sharding here, mixed precision and processes in `accelerate`."""
    settings = read_accelerate_settings(path, data, source)
    if settings.distributed_type == "FSDP":
        return DistributedSetup(
            name, "fsdp", {"fsdp": True, "fsdp_config": _fsdp_from_accelerate(data)}, path, settings
        )
    if settings.distributed_type == "DEEPSPEED":
        section = data.get("deepspeed_config") or {}
        if section.get("deepspeed_config_file"):
            file = Path(section["deepspeed_config_file"]).expanduser()
            return DistributedSetup(
                name,
                "deepspeed",
                {"deepspeed": str(file if file.is_absolute() else path.parent / file)},
                path,
                settings,
            )
        return DistributedSetup(name, "deepspeed", {"deepspeed": _deepspeed_from_accelerate(section)}, path, settings)
    return DistributedSetup(name, "ddp", {}, path, settings)  # MULTI_GPU, MULTI_CPU, NO: plain data parallel


def _fsdp_from_accelerate(data: dict[str, Any]) -> dict[str, Any]:
    """accelerate's `fsdp_config:` section in the spelling TrainingArguments.fsdp_config reads."""
    config = {key.removeprefix("fsdp_"): value for key, value in (data.get("fsdp_config") or {}).items()}
    config["version"] = int(config.get("version", 1))  # accelerate's default, unlike transformers' (2)
    strategy = config.pop("sharding_strategy", None)
    if strategy is not None and "reshard_after_forward" not in config:
        strategy = str(strategy).upper()
        config["reshard_after_forward"] = strategy if config["version"] == 1 else strategy == "FULL_SHARD"
    if "offload_params" in config:
        config["cpu_offload"] = config.pop("offload_params")
    return config


def _deepspeed_from_accelerate(section: dict[str, Any]) -> dict[str, Any]:
    zero: dict[str, Any] = {"stage": int(section.get("zero_stage", 2))}
    for what in ("optimizer", "param"):
        device = section.get(f"offload_{what}_device")
        if device and device != "none":
            zero[f"offload_{what}"] = {"device": device}
    return {
        "zero_optimization": zero,
        "bf16": {"enabled": "auto"},
        "fp16": {"enabled": "auto"},
        "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto",
        "train_batch_size": "auto",
        "train_micro_batch_size_per_gpu": "auto",
    }


# ----------------------------------------------------------------------------- load-time checks


def apply_distributed(config: LoadedConfig, *, has_cuda: bool, world_size: int) -> list[Override]:
    """Check `distributed:` (resolved in `config.distributed`) at load time; on a CPU, fall back to what runs there.

    - accelerate shards (FSDP, DeepSpeed) on GPUs only: on a CPU the run uses plain data parallel;
    - several CPU processes need `use_cpu: true`, else accelerate leaves each process training alone.

    The accelerate file's settings and `use_cpu` go into `config.trl_args` (they are the file's and the
    launch's, not changes to what the config wrote); what the config wrote and the run does not use is
    returned as `Override`s for the caller to apply (`distributed` becoming `ddp` on a CPU).
    The packages a preset needs are checked after this (`config.packages`): on a CPU it needs none.
    Raises `ConfigError` for a bad preset.
    """
    options, overrides = config.options, []
    setup = config.distributed
    if setup is not None:
        if setup.accelerate is not None:
            overrides += _carry_accelerate_settings(config, setup, has_cuda=has_cuda, world_size=world_size)
        if setup.kind != "ddp" and not has_cuda:
            overrides.append(
                Override("distributed", options.distributed, "ddp", "shards the model across GPUs and none was found; "
                         "plain data parallel on the CPU instead", "option")
            )
    if not has_cuda and world_size > 1:
        config.trl_args.setdefault("use_cpu", True)
    return overrides


def _carry_accelerate_settings(
    config: LoadedConfig, setup: DistributedSetup, *, has_cuda: bool, world_size: int
) -> list[Override]:
    """An accelerate config's mixed precision into `fp16` / `bf16`; its process count checked against the job's.

    Raises:
        ConfigError: the file's mixed precision contradicts `bf16` / `fp16` set in the config itself.
    """
    settings, overrides = setup.accelerate, []
    assert settings is not None
    origin = f"distributed: {setup.name}"
    wanted = mixed_precision_fields(settings)
    if settings.mixed_precision in ("fp16", "bf16") and not has_cuda:
        overrides.append(
            Override(f"{origin} mixed_precision", settings.mixed_precision, "no", "needs a CUDA GPU; training in float32 instead")
        )
        wanted = {}
    for key, value in wanted.items():
        written = config.trl_origins.get(key) == ORIGIN_FILE
        if written and bool(config.trl_args.get(key)) != value:
            raise ConfigError(
                f"distributed: {setup.name} sets mixed_precision: {settings.mixed_precision}, but the config sets "
                f"{key}: {config.trl_args.get(key)}",
                where=config.source,
                fix=f"remove {key} from the config (the accelerate file decides), or change mixed_precision in {setup.name}",
            )
        if not written:
            config.trl_args[key] = value
            config.trl_origins[key] = origin
    for key, value in settings.trl_args.items():
        if config.trl_origins.get(key) != ORIGIN_FILE:
            config.trl_args[key] = value
            config.trl_origins[key] = origin
    launch = settings.launch
    if launch is not None and world_size > 1 and launch.num_processes != world_size:
        overrides.append(
            Override(f"{origin} num_processes", launch.num_processes, world_size, "this job runs that many processes: "
                     "the launcher's count is used")
        )
    return overrides


def log_on_main_process(log: logging.Logger, warnings: list[str]) -> None:
    """Log each warning once per job, not once per rank (torchrun sets RANK in every process)."""
    if os.environ.get("RANK", "0") == "0":
        for line in warnings:
            log.warning(line)
