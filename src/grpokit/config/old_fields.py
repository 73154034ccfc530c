"""Fields a pinned TRL release read that today's TRL and transformers lack: mapped, inert, or refused by version.

A config written for TRL 0.18 (`trl_defaults: 0.18.0`, or `grpokit convert trl --trl-version 0.18.0`)
may set any field that release's `trl grpo` read: its `GRPOConfig` (the generated table
`trl_defaults/<version>.json`) and the `TrainingArguments` of the transformers it ran on (the oldest it
accepted: `trl_defaults/training_arguments/<transformers version>.json`). Fields since removed are read
as they were meant, each said once as an `Override`:

- **mapped** onto what replaced them: `warmup_ratio` -> `warmup_steps` (a value below 1 is a share
  of the steps), `evaluation_strategy` -> `eval_strategy`, `no_cuda` -> `use_cpu`, `per_gpu_*` ->
  `per_device_*`, `push_to_hub_model_id` (+ `_organization`) -> `hub_model_id`, `push_to_hub_token` ->
  `hub_token`, `adafactor: true` -> `optim: adafactor`, `torchdynamo` -> `torch_compile_backend`,
  `fsdp_min_num_params` / `fsdp_transformer_layer_cls_to_wrap` -> `fsdp_config`, `dispatch_batches` /
  `split_batches` -> `accelerator_config`, TRL's `use_liger_loss` -> `use_liger_kernel`,
  `vllm_guided_decoding_regex` -> `vllm_structured_outputs_regex`, `vllm_max_model_len` ->
  `vllm_max_model_length` (and `max_prompt_length`, a grpokit option: `config.trl_versions`);
- **inert** where they changed nothing a GRPO run does (`overwrite_output_dir`: transformers' Trainer
  never read it, only example scripts did; `logging_dir`, `group_by_length`, TPU and evaluation-loop
  knobs, ...), or where the value is that release's default;
- **refused**, naming the release, where a value other than the default asked for something today's
  libraries no longer do (`use_ipex: true`, `half_precision_backend: apex`, `vllm_device: cuda:7`).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grpokit.config.overrides import INERT, Override
from grpokit.errors import ConfigError

TRAINING_ARGUMENTS_DIR = Path(__file__).resolve().parent / "trl_defaults" / "training_arguments"
# Old field -> today's TRL / TrainingArguments field of the same meaning.
RENAMED: dict[str, str] = {
    "evaluation_strategy": "eval_strategy",
    "no_cuda": "use_cpu",
    "per_gpu_train_batch_size": "per_device_train_batch_size",
    "per_gpu_eval_batch_size": "per_device_eval_batch_size",
    "push_to_hub_token": "hub_token",
    "use_liger_loss": "use_liger_kernel",
    "vllm_guided_decoding_regex": "vllm_structured_outputs_regex",
    "vllm_max_model_len": "vllm_max_model_length",
}
# Old fields that change nothing in a grpokit GRPO run, whatever their value, and why.
NO_EFFECT: dict[str, str] = {
    "overwrite_output_dir": "transformers' Trainer never read it (only its example scripts did); grpokit resumes as resume: says",
    "logging_dir": "grpokit writes TensorBoard logs under <output_dir>/tensorboard (TENSORBOARD_LOGGING_DIR moves them)",
    "use_mps_device": "transformers used an Apple GPU whenever there was one, whatever this said",
    "save_safetensors": "checkpoints and models are always saved as safetensors",
    "include_tokens_per_second": "grpokit logs tokens per second itself",
    "include_inputs_for_metrics": "only compute_metrics read it, which GRPO does not use",
    "group_by_length": "GRPOTrainer samples its own batches and never read it",
    "past_index": "only the evaluation loop of models with memory read it",
    "jit_mode_eval": "only the evaluation loop read it",
    "use_legacy_prediction_loop": "only the evaluation loop read it",
    "ray_scope": "only a Ray hyperparameter search read it",
    "tpu_num_cores": "only TPU launches read it",
    "tpu_metrics_debug": "only TPU launches read it",
    "fp16_opt_level": "only NVIDIA apex read it; transformers trains in half precision through torch AMP",
    "wandb_log_unique_prompts": "grpokit's W&B tracker logs its own table of completions",
    "mp_parameters": "only SageMaker's model-parallel launcher read it",
}
# Old fields whose values other than these are refused: torch's own AMP is what transformers uses today.
ALLOWED_VALUES: dict[str, tuple[Any, ...]] = {
    "half_precision_backend": ("auto", "cpu_amp", "amp"),
    "fp16_backend": ("auto", "cpu_amp", "amp"),
}


@dataclass
class OldFieldReading:
    """What a file's fields of an older release become: today's TRL fields, and one override each."""

    trl_args: dict[str, Any] = field(default_factory=dict)
    overrides: list[Override] = field(default_factory=list)


@functools.cache
def training_arguments_fields(transformers_version: str) -> dict[str, Any]:
    """Every `TrainingArguments` field of a transformers release with its default (the generated table)."""
    path = TRAINING_ARGUMENTS_DIR / f"{transformers_version}.json"
    return json.loads(path.read_text(encoding="utf-8"))["fields"]


@functools.cache
def release_fields(version: str) -> dict[str, Any]:
    """Every field `trl grpo` of TRL `version` read through its GRPOConfig, with that release's default."""
    from grpokit.config.trl_versions import TABLE_DIR, version_defaults

    table = json.loads((TABLE_DIR / f"{version}.json").read_text(encoding="utf-8"))
    return {**training_arguments_fields(table["transformers_floor"]), **version_defaults(version)}


def old_field_names(version: str, current: set[str] | frozenset[str]) -> set[str]:
    """The fields of TRL `version`'s GRPOConfig (its TrainingArguments included) that `current` (today's) lacks."""
    return set(release_fields(version)) - set(current)


def read_old_fields(old: dict[str, Any], version: str, *, explicit: dict[str, Any], source: str) -> OldFieldReading:
    """Map a file's fields of TRL `version` that today's TRL lacks (`old`) onto today's fields.

    `explicit`: the TRL fields the file sets itself (a mapped value that contradicts one is an error).

    Raises:
        ConfigError: a value today's libraries cannot honour (naming the release), or one that contradicts
            a field the file also sets.
    """
    reading = OldFieldReading()
    defaults = release_fields(version)
    for key, value in old.items():
        why_then = f"TRL {version}'s {key}"
        if key in RENAMED:
            _set(reading, explicit, RENAMED[key], value, key, source)
            reading.overrides.append(Override(key, value, {RENAMED[key]: value}, f"{why_then} is {RENAMED[key]} today"))
        elif key in MAPPERS:
            MAPPERS[key](reading, old, explicit, value, version, source)
        elif key in NO_EFFECT or value == defaults.get(key) or value in ALLOWED_VALUES.get(key, ()):
            why = NO_EFFECT.get(key) or f"{why_then}: {value!r} was that release's default, and today's has no {key}"
            reading.overrides.append(Override(key, value, INERT, why))
        else:
            raise ConfigError(
                f"{key}: {value!r} was read by TRL {version} (or its transformers), but today's TRL and transformers "
                f"have no {key} and nothing that does the same",
                where=source,
                fix=f"remove {key} (its default there was {defaults.get(key)!r}); see docs/migrating.md",
            )
    return reading


def _set(reading: OldFieldReading, explicit: dict[str, Any], key: str, value: Any, old_key: str, source: str) -> None:
    if key in explicit and explicit[key] != value:
        raise ConfigError(
            f"{old_key} (an older release's field) and {key} (today's) are both set, to different values",
            where=source,
            fix=f"keep {key}: {old_key} is read as {key}",
        )
    reading.trl_args[key] = value


def _warmup_ratio(reading, old, explicit, value, version, source) -> None:
    if not value:
        reading.overrides.append(Override("warmup_ratio", value, INERT, "no warmup, as warmup_steps' default"))
        return
    if explicit.get("warmup_steps"):  # transformers < 5: "warmup_steps overrides any effect of warmup_ratio"
        reading.overrides.append(Override("warmup_ratio", value, INERT, "warmup_steps is set, which won over warmup_ratio then"))
        return
    if not 0 < value < 1:
        raise ConfigError(
            f"warmup_ratio: {value!r} warms up over the whole run; today's warmup_steps reads a value of 1 or more as steps",
            where=source,
            fix="set warmup_steps to the run's number of steps instead",
        )
    _set(reading, explicit, "warmup_steps", value, "warmup_ratio", source)
    why = "transformers 5 replaced it by warmup_steps, which reads a value below 1 as a share of the steps"
    reading.overrides.append(Override("warmup_ratio", value, {"warmup_steps": value}, why))


def _hub_model_id(reading, old, explicit, value, version, source) -> None:
    organization = old.get("push_to_hub_organization")
    model_id = f"{organization}/{value}" if organization and value and "/" not in str(value) else value
    _set(reading, explicit, "hub_model_id", model_id, "push_to_hub_model_id", source)
    reading.overrides.append(Override("push_to_hub_model_id", value, {"hub_model_id": model_id}, "hub_model_id today"))


def _hub_organization(reading, old, explicit, value, version, source) -> None:
    if not old.get("push_to_hub_model_id"):  # else read into hub_model_id, which its override says
        reading.overrides.append(Override("push_to_hub_organization", value, INERT, "push_to_hub_model_id, which it prefixed, is not set"))


def _adafactor(reading, old, explicit, value, version, source) -> None:
    if not value:
        reading.overrides.append(Override("adafactor", value, INERT, "the default: optim decides"))
        return
    _set(reading, explicit, "optim", "adafactor", "adafactor", source)
    reading.overrides.append(Override("adafactor", value, {"optim": "adafactor"}, "optim: adafactor today"))


def _torchdynamo(reading, old, explicit, value, version, source) -> None:
    if value is None:
        reading.overrides.append(Override("torchdynamo", value, INERT, "the default: no compilation"))
        return
    _set(reading, explicit, "torch_compile_backend", value, "torchdynamo", source)
    _set(reading, explicit, "torch_compile", True, "torchdynamo", source)
    reading.overrides.append(Override("torchdynamo", value, {"torch_compile": True, "torch_compile_backend": value}, "torch_compile today"))


def _into_section(section: str, inner: str) -> Callable:
    def mapper(reading, old, explicit, value, version, source) -> None:
        key = next(k for k, (s, i) in SECTION_FIELDS.items() if (s, i) == (section, inner))
        if value in (None, 0, ""):
            reading.overrides.append(Override(key, value, INERT, "the default"))
            return
        merged = {**(explicit.get(section) or {}), **reading.trl_args.get(section, {}), inner: value}
        reading.trl_args[section] = merged
        reading.overrides.append(Override(key, value, {section: {inner: value}}, f"{section}.{inner} today"))

    return mapper


SECTION_FIELDS = {
    "fsdp_min_num_params": ("fsdp_config", "min_num_params"),
    "fsdp_transformer_layer_cls_to_wrap": ("fsdp_config", "transformer_layer_cls_to_wrap"),
    "dispatch_batches": ("accelerator_config", "dispatch_batches"),
    "split_batches": ("accelerator_config", "split_batches"),
}
MAPPERS: dict[str, Callable] = {
    "warmup_ratio": _warmup_ratio,
    "push_to_hub_model_id": _hub_model_id,
    "push_to_hub_organization": _hub_organization,
    "adafactor": _adafactor,
    "torchdynamo": _torchdynamo,
    **{key: _into_section(section, inner) for key, (section, inner) in SECTION_FIELDS.items()},
}


def old_release_key_error(key: str, source: str) -> ConfigError | None:
    """For a key no grpokit, TRL or `trl grpo` reads today but an older release did: the error saying how to read
    it as that release did (`trl_defaults:`); None for a key no shipped release knows."""
    from grpokit.config.trl_versions import available_versions

    versions = [version for version in available_versions() if key in release_fields(version)]
    if not versions:
        return None
    from grpokit.config.trl_versions import installed_trl_version

    return ConfigError(
        f"{key} is read by neither TRL {installed_trl_version()} nor the installed transformers; TRL {versions[0]} to "
        f"{versions[-1]} read it (with the oldest transformers each of them accepted)",
        where=source,
        fix=f"if the config was written for one of those releases, set trl_defaults: <that version> and grpokit reads "
        f"{key} as it did (or maps it to what replaced it); else remove {key}",
    )
