"""What a run records about itself when it starts, and the few lines it logs about its config.

Written by the main process at the start of every training run, next to `grpokit_config.yaml`:

- `run_info.json`: the versions of grpokit and the libraries that trained (TRL, transformers, torch,
  PEFT, accelerate, datasets, Python) and the hardware (platform, CPU, cores, memory, GPUs, processes);
  the report shows them, so a result can be told apart from one of another setup; and `overrides`, every
  value of the config the run did not use as written (`RunConfig.overrides`: changed for this machine
  or launch, or acting on nothing), which the report's config section lists;
- `trl_differences.txt`: every field where the resolved config differs from the installed TRL's
  defaults, with the default and where the value came from (the file, `trl_defaults:`, grpokit's
  defaults, this machine); the log shows the same as one compact block that names this file.

Example of the logged block:

    TRL fields that differ from TRL 1.16.0's defaults: 21 (the table: outputs/run/trl_differences.txt)
      set in the config: learning_rate=0.0002, max_steps=6, per_device_train_batch_size=4, ...
      trl_defaults 0.17.0: beta=0.04, loss_type=bnpo, top_k=50, ...
      set by grpokit for this machine or launch: bf16=False, dataloader_pin_memory=False
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import platform
from pathlib import Path
from typing import Any

from grpokit.outputs.files import RUN_INFO_FILE, TRL_DIFFERENCES_FILE, atomic_write_text

logger = logging.getLogger("grpokit.outputs")

PACKAGES = ("grpokit", "trl", "transformers", "torch", "peft", "accelerate", "datasets")
MAX_FIELDS_PER_LINE = 16  # a longer group ends with "and N more": the table has them all
# the block's lines in this order: what the file set, then the pinned release's defaults, grpokit's, this machine's
ORIGIN_ORDER = {"set in the config": 0, "trl_defaults": 1, "grpokit's default": 2, "set by grpokit for this machine or launch": 3}


def package_versions() -> dict[str, str | None]:
    """The installed version of each of `PACKAGES` and of Python (None: not installed)."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gb() -> float | None:
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):  # not on every platform
        return None


def hardware(world_size: int = 1) -> dict[str, Any]:
    """This machine: platform, CPU, cores, memory, GPUs (name and memory each), the job's processes."""
    import torch

    gpus = []
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            properties = torch.cuda.get_device_properties(index)
            gpus.append({"name": properties.name, "memory_gb": round(properties.total_memory / 2**30, 1)})
    return {
        "platform": platform.platform(),
        "cpu": _cpu_name(),
        "cpu_cores": os.cpu_count(),
        "memory_gb": _memory_gb(),
        "gpus": gpus,
        "processes": world_size,
    }


def write_run_info(
    output_dir: str | Path, *, world_size: int = 1, differences: list | None = None, overrides: list | tuple = ()
) -> Path:
    """Write `run_info.json` into `output_dir`: versions, hardware, the fields that differ from TRL's defaults,
    and the config's values the run does not use as written (`config.overrides.Override`, secrets masked)."""
    from grpokit.secrets import is_secret_key

    info = {
        "versions": package_versions(),
        "hardware": hardware(world_size),
        "trl_differences": [
            {"key": d.key, "value": d.value, "default": d.trl_default if d.in_trl else None, "origin": d.origin}
            for d in differences or []
        ],
        "overrides": [
            {**o.as_record(), "written": "***", "used": "***"} if is_secret_key(o.key) else o.as_record() for o in overrides
        ],
    }
    return atomic_write_text(Path(output_dir) / RUN_INFO_FILE, json.dumps(info, indent=2, default=str) + "\n")


def read_run_info(output_dir: str | Path) -> dict[str, Any] | None:
    """A run's `run_info.json`, or None (a run from before it was written, or a damaged file)."""
    path = Path(output_dir) / RUN_INFO_FILE
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return info if isinstance(info, dict) else None


def shown(value: Any) -> str:
    """A config value as `key=value` shows it: strings bare, the rest as Python prints it.

    >>> shown("bnpo"), shown(2e-4), shown(False), shown([1, 2])
    ('bnpo', '0.0002', 'False', '[1, 2]')
    """
    return value if isinstance(value, str) else repr(value)


def difference_block(differences: list, trl_version: str, table: Path | None) -> list[str]:
    """The compact log block of `trl_versions.default_differences`: a header, then one line per origin."""
    if not differences:
        return [f"TRL fields that differ from TRL {trl_version}'s defaults: none"]
    where = f" (the table: {table})" if table is not None else ""
    lines = [f"TRL fields that differ from TRL {trl_version}'s defaults: {len(differences)}{where}"]
    by_origin: dict[str, list[str]] = {}
    for difference in sorted(differences, key=lambda d: (ORIGIN_ORDER.get(d.origin.split(":")[0], len(ORIGIN_ORDER)), d.key)):
        by_origin.setdefault(difference.origin.replace(": ", " "), []).append(f"{difference.key}={shown(difference.value)}")
    for origin, fields in by_origin.items():
        more = f", and {len(fields) - MAX_FIELDS_PER_LINE} more" if len(fields) > MAX_FIELDS_PER_LINE else ""
        lines.append(f"  {origin}: {', '.join(fields[:MAX_FIELDS_PER_LINE])}{more}")
    return lines


def write_differences_table(differences: list, trl_version: str, output_dir: str | Path) -> Path:
    """Write `trl_differences.txt`: one line per field, its value, TRL's default and where the value came from."""
    lines = [difference.line(trl_version) for difference in differences] or [f"no field differs from TRL {trl_version}'s defaults"]
    return atomic_write_text(Path(output_dir) / TRL_DIFFERENCES_FILE, "\n".join(lines) + "\n")


def options_line(config) -> str:
    """grpokit's options that differ from their defaults, one line (secrets masked), and the rewards."""
    from grpokit.secrets import mask_secrets

    changed = config.options.model_dump(mode="json", exclude_defaults=True)
    rewards = changed.pop("rewards", None)
    changed.pop("dataset", None)
    parts = [f"{key}={shown(value)}" for key, value in mask_secrets(changed).items()]
    if rewards:
        parts.append("rewards=" + "+".join(str(reward.get("name")) for reward in rewards if isinstance(reward, dict)))
    return ", ".join(parts)


def masked(differences: list) -> list:
    """The differences with every secret value (`hub_token`, ...) replaced by `***`: they go to files and logs."""
    import dataclasses

    from grpokit.secrets import is_secret_key, mask_secrets

    return [
        dataclasses.replace(d, value=mask_secrets({d.key: d.value})[d.key]) if is_secret_key(d.key) else d for d in differences
    ]


def record_run_start(config, output_dir: str | Path, *, world_size: int = 1) -> list[str]:
    """Write `run_info.json` and `trl_differences.txt` (secrets masked); return the lines to log about the config."""
    from grpokit.config.trl_versions import default_differences, installed_trl_version

    version = installed_trl_version()
    differences = masked(default_differences(config))
    write_run_info(output_dir, world_size=world_size, differences=differences, overrides=config.overrides)
    table = write_differences_table(differences, version, output_dir)
    for difference in differences:  # the whole table in the log too, with --verbose
        logger.debug("differs from TRL's defaults: %s", difference.line(version))
    return difference_block(differences, version, table)
