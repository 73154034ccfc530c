"""`trl grpo`'s launch keys in a config: the `accelerate launch` options its YAML may carry.

`trl grpo --config run.yaml` hands the keys its dataclasses do not read to `accelerate launch` as
`--key value` (trl/cli/commands/training.py), and turns `accelerate_config: NAME` into `--config_file`,
NAME being a file or one of the profiles TRL ships (`zero2`, `fsdp2`, `multi_gpu`, ...,
trl/accelerate_configs/). grpokit reads the ones that decide the launch:

| key | in grpokit |
|---|---|
| `accelerate_config` | `distributed:` (the file, or TRL's shipped profile of that name) |
| `num_processes` | the processes `grpokit train` starts (as `--nproc`; the command line wins) |
| `num_machines`, `machine_rank`, `main_process_ip`, `main_process_port` | `--nnodes`, `--node-rank`, `--master-addr`, `--master-port` |

Any other `accelerate launch` option (`mixed_precision`, `use_deepspeed`, `zero_stage`, ...) is one
error that names it and says to write it into the accelerate config file `accelerate_config` names,
which grpokit reads as accelerate does (`config.accelerate_file`); the names come from accelerate's
own launch parser, read from its source. Like accelerate's command-line options, these keys win over the accelerate file's own
`num_processes` and rendezvous. One difference: on a machine without GPUs, `accelerate launch
--num_processes 4` starts one process; grpokit starts the 4 asked for (data parallel on the CPU).

Reading these keys imports nothing heavy: `grpokit train` decides the launch before loading TRL.
"""

from __future__ import annotations

import functools
import importlib.util
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grpokit.config.overrides import Override
from grpokit.errors import ConfigError

# The launch key -> the `grpokit train` option it stands for (None: accelerate_config, read as distributed:).
LAUNCH_KEYS: dict[str, str | None] = {
    "accelerate_config": None,
    "num_processes": "nproc",
    "num_machines": "nnodes",
    "machine_rank": "node_rank",
    "main_process_ip": "master_addr",
    "main_process_port": "master_port",
}
WHOLE_NUMBERS = {"num_processes": 1, "num_machines": 1, "machine_rank": 0, "main_process_port": 1}  # key -> least value


@dataclass(frozen=True)
class LaunchKeys:
    """The launch keys a config sets (None: not set): the process count, the rendezvous and the accelerate file."""

    accelerate_config: str | None = None  # as `distributed:` reads it: a path, or TRL's profile as an absolute path
    num_processes: int | None = None
    num_machines: int | None = None
    machine_rank: int | None = None
    main_process_ip: str | None = None
    main_process_port: int | None = None

    def rendezvous(self) -> dict[str, Any]:
        """The `grpokit train` rendezvous options these keys set (`nnodes`, `node_rank`, ...), unset ones left out."""
        return {
            option: getattr(self, key)
            for key, option in LAUNCH_KEYS.items()
            if option not in (None, "nproc") and getattr(self, key) is not None
        }


def trl_accelerate_profile(name: str) -> Path | None:
    """TRL's shipped accelerate config `name` (`zero2` -> trl/accelerate_configs/zero2.yaml), found without importing TRL."""
    spec = importlib.util.find_spec("trl")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "accelerate_configs" / f"{name}.yaml"
    return path if path.is_file() else None


def trl_accelerate_profiles() -> list[str]:
    """The names of the accelerate configs TRL ships (what `accelerate_config: NAME` may name)."""
    found = trl_accelerate_profile("multi_gpu")
    return sorted(path.stem for path in found.parent.glob("*.yaml")) if found is not None else []


def read_launch_keys(data: Mapping[str, Any], base_dir: Path, source: str) -> LaunchKeys:
    """The launch keys of a config's mapping, checked.

    `accelerate_config` is a file (relative to the config file, or to the current directory as `trl grpo`
    reads it) or the name of one of TRL's profiles.

    Raises:
        ConfigError: a count or port that is not a whole number in range, or an `accelerate_config` that is
            neither a file nor one of TRL's profiles.
    """
    values: dict[str, Any] = {}
    for key, least in WHOLE_NUMBERS.items():
        value = data.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ConfigError(
                f"{key}: {value!r} is not a whole number of {least} or more",
                where=source,
                fix=f"set {key} as `accelerate launch --{key}` takes it",
            )
        values[key] = value
    if data.get("main_process_ip") is not None:
        values["main_process_ip"] = str(data["main_process_ip"])
    if data.get("accelerate_config") is not None:
        values["accelerate_config"] = _accelerate_file(str(data["accelerate_config"]), base_dir, source)
    return LaunchKeys(**values)


def _accelerate_file(value: str, base_dir: Path, source: str) -> str:
    path = Path(value).expanduser()
    if path.is_absolute() or (base_dir / path).is_file():
        return value  # `distributed:` reads it relative to the config file
    if path.is_file():  # `trl grpo` reads it relative to the directory it runs in
        return str(path.resolve())
    profile = trl_accelerate_profile(value)
    if profile is not None:
        return str(profile)
    raise ConfigError(
        f"accelerate_config: {value!r} is neither a file nor one of the accelerate configs TRL ships",
        where=source,
        fix=f"give the path of an accelerate config file, or one of {', '.join(trl_accelerate_profiles()) or 'zero2, fsdp2, ...'}",
    )


def launch_overrides(launch: LaunchKeys, *, world_size: int) -> list[Override]:
    """`num_processes` where the job runs another number of processes (a launcher's `--nproc` wins, as in accelerate)."""
    if launch.num_processes is None or world_size <= 1 or launch.num_processes == world_size:
        return []
    return [Override("num_processes", launch.num_processes, world_size, "this job runs that many processes: the launcher's count is used")]


@functools.cache
def accelerate_launch_option_names() -> frozenset[str]:
    """The options `accelerate launch` takes (`--mixed_precision`, ...), read from accelerate's source without importing it."""
    spec = importlib.util.find_spec("accelerate")
    if spec is None or not spec.submodule_search_locations:
        return frozenset()
    source = Path(next(iter(spec.submodule_search_locations))) / "commands" / "launch.py"
    if not source.is_file():
        return frozenset()
    return frozenset(re.findall(r'add_argument\(\s*"--([A-Za-z0-9_]+)"', source.read_text(encoding="utf-8")))


def accelerate_launch_key_error(key: str, source: str) -> ConfigError | None:
    """For an `accelerate launch` option grpokit does not read from a config: the error saying where it goes
    instead; None for any other key."""
    if key in LAUNCH_KEYS or key not in accelerate_launch_option_names():
        return None
    return ConfigError(
        f"{key} is an `accelerate launch` option (trl grpo hands it to accelerate); from a config grpokit reads only "
        f"the launch keys {', '.join(LAUNCH_KEYS)}",
        where=source,
        fix=f"write {key} into an accelerate config file and name it with accelerate_config: (grpokit reads it as "
        "accelerate does), or use grpokit's own key for it (docs/distributed.md)",
    )
