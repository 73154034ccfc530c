"""An `accelerate config` file under `distributed:`: what it says, carried into the run or refused by name.

The AWS sample's accelerate variant ran `accelerate launch --config_file default_config.yaml`
(`distributed_type: MULTI_GPU`, `mixed_precision: fp16`, `num_processes: 8`). grpokit reads such a
file as accelerate would and carries it into the run:

| accelerate key | in grpokit |
|---|---|
| `distributed_type` | NO / MULTI_GPU / MULTI_CPU: data parallel; FSDP: `fsdp`, `fsdp_config`; DEEPSPEED: `deepspeed` |
| `mixed_precision` | `fp16` / `bf16` / `no`: the TrainingArguments fields `fp16` and `bf16` |
| `num_processes`, `num_machines`, `machine_rank`, `main_process_ip`, `main_process_port` | the process count and rendezvous of `grpokit train` (torchrun), unless `--nproc` (or the config's own `num_processes`) says otherwise; with `distributed_type: NO` one process, as `accelerate launch` starts |
| `use_cpu` | `use_cpu` |

A key grpokit cannot honour (`mixed_precision: fp8`, a `gpu_ids` list, `compute_environment:
AMAZON_SAGEMAKER`, a dynamo backend, a TPU or Megatron setup, any key it does not know that is set)
is a `ConfigError` naming it; launch details with no effect on training (`main_training_function`,
`rdzv_backend`, `same_network`, `debug`, `tpu_*` left empty, ...) are accepted.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grpokit.errors import ConfigError

SUPPORTED_TYPES = ("NO", "MULTI_GPU", "MULTI_CPU", "FSDP", "DEEPSPEED")
MIXED_PRECISION_FIELDS: dict[str, dict[str, bool]] = {
    "no": {"bf16": False, "fp16": False},
    "fp16": {"fp16": True, "bf16": False},
    "bf16": {"bf16": True, "fp16": False},
}
# Keys read elsewhere in this module or by the caller (distributed.py translates fsdp / deepspeed).
TRANSLATED_KEYS = {
    "distributed_type", "mixed_precision", "num_processes", "num_machines", "machine_rank", "main_process_ip",
    "main_process_port", "use_cpu", "fsdp_config", "deepspeed_config", "compute_environment", "gpu_ids",
    "downcast_bf16", "dynamo_config", "dynamo_backend",
}  # fmt: skip
# Launch details that do not change what is trained.
NO_EFFECT_KEYS = {
    "debug", "enable_cpu_affinity", "main_training_function", "rdzv_backend", "same_network", "tpu_env",
    "tpu_use_cluster", "tpu_use_sudo", "tpu_name", "tpu_zone", "commands", "command_file", "megatron_lm_config",
    "ipex_config", "mpirun_config", "parallelism_config", "fp8_config",
}  # fmt: skip


@dataclass(frozen=True)
class AccelerateLaunch:
    """The processes an accelerate config asks for: `num_processes` in all, over `num_machines`."""

    num_processes: int
    num_machines: int = 1
    machine_rank: int = 0
    main_process_ip: str | None = None
    main_process_port: int | None = None

    @property
    def processes_per_machine(self) -> int:
        return max(1, self.num_processes // max(1, self.num_machines))


@dataclass(frozen=True)
class AccelerateSettings:
    """What grpokit takes from an accelerate config besides the sharding (FSDP / DeepSpeed) sections."""

    distributed_type: str
    mixed_precision: str | None  # "no", "fp16", "bf16" or None (not given)
    launch: AccelerateLaunch | None
    trl_args: dict[str, Any]  # use_cpu


def read_accelerate_settings(path: Path, data: dict[str, Any], source: str) -> AccelerateSettings:
    """Check an accelerate config for what grpokit cannot honour, and read what it can.

    Raises:
        ConfigError: naming the first key that cannot be honoured and why.
    """
    distributed_type = str(data["distributed_type"]).upper()
    refusals = [
        ("distributed_type", distributed_type not in SUPPORTED_TYPES, f"grpokit runs {', '.join(SUPPORTED_TYPES)}"),
        (
            "compute_environment",
            str(data.get("compute_environment") or "LOCAL_MACHINE").upper() != "LOCAL_MACHINE",
            "run it on SageMaker with `grpokit launch sagemaker` instead",
        ),
        ("gpu_ids", data.get("gpu_ids") not in (None, "", "all"), "choose GPUs with CUDA_VISIBLE_DEVICES instead"),
        ("downcast_bf16", str(data.get("downcast_bf16") or "no").lower() not in ("no", "false"), "it applies to TPUs only"),
        ("mixed_precision", _mixed_precision(data) not in (None, *MIXED_PRECISION_FIELDS), "grpokit trains in no, fp16 or bf16"),
        ("dynamo_config", _dynamo_backend(data) not in ("NO", ""), "use the TrainingArguments field torch_compile: true"),
    ]
    for key, refused, why in refusals:
        if refused:
            raise _cannot_honour(path, key, data.get(key, data.get("dynamo_backend")), why, source)
    unknown = sorted(key for key, value in data.items() if key not in TRANSLATED_KEYS | NO_EFFECT_KEYS and value not in (None, "", False, {}, []))
    if unknown:
        raise _cannot_honour(path, unknown[0], data[unknown[0]], "grpokit does not know this accelerate key", source)
    return AccelerateSettings(
        distributed_type=distributed_type,
        mixed_precision=_mixed_precision(data),
        launch=None if distributed_type == "NO" else _launch(data, path, source),  # `accelerate launch` starts one process
        trl_args={"use_cpu": True} if data.get("use_cpu") else {},
    )


def _mixed_precision(data: dict[str, Any]) -> str | None:
    value = data.get("mixed_precision")
    return None if value is None else str(value).lower()


def _dynamo_backend(data: dict[str, Any]) -> str:
    backend = (data.get("dynamo_config") or {}).get("dynamo_backend", data.get("dynamo_backend", "NO"))
    return str(backend or "NO").upper()


def _launch(data: dict[str, Any], path: Path, source: str) -> AccelerateLaunch | None:
    processes = data.get("num_processes")
    if processes in (None, -1):  # accelerate's "not given" (SLURM and the like pass it on the command line)
        return None
    if not isinstance(processes, int) or processes < 1:
        raise _cannot_honour(path, "num_processes", processes, "it must be a whole number of processes, 1 or more", source)
    machines = int(data.get("num_machines") or 1)
    if processes % machines:
        raise _cannot_honour(path, "num_processes", processes, f"it must split evenly over num_machines ({machines})", source)
    port = data.get("main_process_port")
    return AccelerateLaunch(
        num_processes=processes,
        num_machines=machines,
        machine_rank=int(data.get("machine_rank") or 0),
        main_process_ip=data.get("main_process_ip") or None,
        main_process_port=int(port) if port else None,
    )


def _cannot_honour(path: Path, key: str, value: Any, why: str, source: str) -> ConfigError:
    return ConfigError(
        f"distributed: {path.name} sets {key}: {value!r}, which grpokit cannot honour: {why}",
        where=f"{path} (named by {source})",
        fix=f"remove {key} from the accelerate config, or point distributed: at a preset (ddp, fsdp, ...)",
    )


def mixed_precision_fields(settings: AccelerateSettings) -> dict[str, bool]:
    """The TrainingArguments fields (`bf16`, `fp16`) the file's `mixed_precision` stands for; `{}` when not given."""
    return dict(MIXED_PRECISION_FIELDS.get(settings.mixed_precision or "", {}))
