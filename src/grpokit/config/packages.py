"""Packages a config needs: checked at load, so a missing one is one error naming it and the extra that installs it.

Each option that works through an optional package (Liger's kernels, DeepSpeed, vLLM, bitsandbytes,
Flash Attention 2, a tracker) is checked once the CPU fallbacks have run, so what this machine turns
off needs nothing (`use_liger_kernel` on a CPU is off, not missing). The check asks
`importlib.util.find_spec`, which imports nothing. `grpokit validate` and `grpokit train` load the
config the same way, so they stop on the same message, before any model is loaded:

    use_liger_kernel: true needs the liger-kernel package, which is not installed
      where: run.yaml
      fix:   pip install 'grpokit[liger]' (TRL's liger extra), or set use_liger_kernel: false
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from grpokit.errors import ConfigError

GRPOKIT_HANDLES = ("mlflow", "wandb", "tensorboard")  # report_to names grpokit's own trackers stand for
NOT_TRACKERS = ("none", "all")


@dataclass(frozen=True)
class Requirement:
    """An option of the config that needs a package: the option as written, the module, how to install it."""

    option: str  # `use_liger_kernel: true`
    module: str  # the import name: liger_kernel
    package: str  # the name pip installs: liger-kernel
    install: str  # the fix: pip install 'grpokit[liger]' (...)
    instead: str  # or what to set instead


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package that is missing or broken
        return False


def requirements(options, trl_args: Mapping[str, Any], distributed, *, has_cuda: bool) -> list[Requirement]:
    """The packages the resolved config needs on this machine (after the CPU fallbacks), in config order."""
    needed = []
    if trl_args.get("use_liger_kernel"):
        needed.append(Requirement("use_liger_kernel: true", "liger_kernel", "liger-kernel",
                                  "pip install 'grpokit[liger]' (TRL's liger extra)", "set use_liger_kernel: false"))  # fmt: skip
    if trl_args.get("deepspeed") or (distributed is not None and distributed.kind == "deepspeed"):
        option = f"distributed: {options.distributed}" if distributed is not None and distributed.kind == "deepspeed" else "deepspeed"
        needed.append(Requirement(option, "deepspeed", "deepspeed", "pip install 'grpokit[deepspeed]' (TRL's deepspeed "
                                  "extra; on a machine with the CUDA toolkit)", "use distributed: fsdp"))  # fmt: skip
    if has_cuda and trl_args.get("use_vllm"):
        needed.append(Requirement(f"use_vllm: true (vllm_mode: {trl_args.get('vllm_mode', 'colocate')})", "vllm", "vllm",
                                  "pip install 'grpokit[vllm]' (the vLLM versions the installed TRL supports)",
                                  "set use_vllm: false"))  # fmt: skip
    if has_cuda and (options.load_in_4bit or options.load_in_8bit):
        key = "load_in_4bit" if options.load_in_4bit else "load_in_8bit"
        needed.append(Requirement(f"{key}: true", "bitsandbytes", "bitsandbytes", "pip install 'grpokit[gpu]'", f"set {key}: false"))
    if has_cuda and options.attn_implementation == "flash_attention_2":
        needed.append(Requirement("attn_implementation: flash_attention_2", "flash_attn", "flash-attn",
                                  "pip install 'grpokit[gpu]'", "use attn_implementation: sdpa"))  # fmt: skip
    return needed + _tracker_requirements(options, trl_args)


def _tracker_requirements(options, trl_args: Mapping[str, Any]) -> list[Requirement]:
    needed = []
    tracking = "pip install 'grpokit[tracking]'"
    if options.mlflow_uri and options.mlflow_experiment_name:
        needed.append(Requirement("mlflow_uri", "mlflow", "mlflow", tracking, "remove mlflow_uri"))
        if str(options.mlflow_uri).startswith("arn:"):
            needed.append(Requirement("mlflow_uri: arn:...", "sagemaker_mlflow", "sagemaker-mlflow",
                                      "pip install 'grpokit[sagemaker]'", "use an http(s):// tracking URI"))  # fmt: skip
    if options.resolved_wandb_project:
        key = "wandb_project" if options.wandb_project else "wandb_token"
        needed.append(Requirement(key, "wandb", "wandb", tracking, f"remove {key}"))
    if "tensorboard" in report_to_names(trl_args):
        needed.append(Requirement("report_to: tensorboard", "tensorboard", "tensorboard", tracking, "remove tensorboard from report_to"))
    return needed


def report_to_names(trl_args: Mapping[str, Any]) -> list[str]:
    """TRL's `report_to` as a list of names ("none" left out)."""
    value = trl_args.get("report_to", "none")
    names = [value] if isinstance(value, str) else list(value or [])
    return [str(name) for name in names if name != "none"]


def check_packages(options, trl_args: Mapping[str, Any], distributed, *, has_cuda: bool, source: str) -> None:
    """Stop on the first package the config needs and this machine lacks, and on a `report_to` name transformers
    does not know (both are otherwise a traceback in the middle of `train`).

    Raises:
        ConfigError: naming the option, the package and the extra (or pip line) that installs it.
    """
    for need in requirements(options, trl_args, distributed, has_cuda=has_cuda):
        if not _installed(need.module):
            raise ConfigError(
                f"{need.option} needs the {need.package} package, which is not installed",
                where=source,
                fix=f"{need.install}, or {need.instead}",
            )
    _check_other_trackers(trl_args, source)


def _check_other_trackers(trl_args: Mapping[str, Any], source: str) -> None:
    """`report_to` names that transformers' own integrations handle (trackio, comet_ml, ...): known and installed."""
    names = [name for name in report_to_names(trl_args) if name not in GRPOKIT_HANDLES + NOT_TRACKERS]
    if not names:
        return
    from transformers.integrations.integration_utils import (
        INTEGRATION_TO_CALLBACK,
        get_available_reporting_integrations,
    )

    available = set(get_available_reporting_integrations())
    for name in names:
        if name not in INTEGRATION_TO_CALLBACK:
            raise ConfigError(
                f"report_to: {name!r} is not a tracker transformers knows",
                where=source,
                fix=f"use one of {', '.join(['none', 'all', *INTEGRATION_TO_CALLBACK])}",
            )
        if name not in available and name not in ("flyte", "kubeflow"):  # transformers has no check for these two
            raise ConfigError(
                f"report_to: {name} needs the {name} package (transformers' {name} integration), which is not installed",
                where=source,
                fix=f"pip install {name}, or remove {name} from report_to",
            )
