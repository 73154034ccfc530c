"""`grpokit convert trl` / `aws-accelerate`: a `trl grpo --config` YAML rewritten as an explicit grpokit config.

Every ModelConfig key the file leaves unset is written with TRL's ModelConfig default (that is what
`trl grpo` trained with), `dataset_name` becomes `load_dataset:`, the reward model and `reward_funcs`
become `rewards:` in TRL's order, `report_to` becomes grpokit's tracker keys, and fields of the TRL
release the file was written for that today's TRL lacks keep their meaning (`max_prompt_length`) or
are noted. See `grpokit.commands.convert` for the AWS sample's `args.yaml`.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from grpokit.commands.conversion import Conversion, show
from grpokit.config.launch_keys import LAUNCH_KEYS
from grpokit.config.old_fields import release_fields
from grpokit.config.trl_cli import (
    DATASET_KEYS,
    MIXTURE_KEYS,
    OPTION_FOR_KEY,
    SAME_NAME_OPTIONS,
    trl_cli_keys,
    trl_grpo_reward_specs,
)
from grpokit.config.trl_versions import resolve_version
from grpokit.errors import ConfigError
from grpokit.secrets import is_secret_key


def convert_trl(
    raw: dict[str, Any], *, source: str, trl_version: str, accelerate_config: str | None, kind: str = "trl"
) -> Conversion:
    """A `trl grpo --config` YAML (or the accelerate sample's) as an explicit grpokit config."""
    from grpokit.config.trl_fields import trl_field_names

    version = resolve_version(trl_version, source)
    known = set(trl_cli_keys()) | set(trl_field_names()) | set(release_fields(version)) | set(LAUNCH_KEYS)
    unknown = sorted(key for key in map(str, raw) if key not in known)
    if unknown:
        raise ConfigError(
            f"{source} has keys `trl grpo` {version} does not read: {', '.join(unknown)}",
            where=source,
            fix="convert a `trl grpo --config` YAML: GRPOConfig (with its TrainingArguments), ModelConfig, ScriptArguments, "
            "DatasetMixtureConfig and accelerate launch keys",
        )
    result = Conversion()
    why = "the accelerate sample pinned trl==0.16.1" if kind == "aws-accelerate" else f"written for TRL {version}"
    result.set("trl_defaults", version, f"{why}: every TRL field not set below takes its default")
    _trl_model(result, raw)
    _trl_data(result, raw)
    _trl_rewards(result, raw, kind, source)
    _trl_launch(result, raw, accelerate_config)
    _trl_tracking(result, raw)
    for key, value in raw.items():
        if is_secret_key(key):
            result.note(f"{key} left out: secrets stay out of config files; export HF_TOKEN")
        elif key in trl_field_names() and key not in ("reward_weights", "output_dir", "report_to") and key not in result.config:
            result.set(key, value, f"{key} (GRPOConfig)")
    if "output_dir" in raw:
        result.set("output_dir", raw["output_dir"], "output_dir: the final model; checkpoints go to <output_dir>/checkpoints")
    _trl_old_fields(result, raw, version, source)
    return result


def _trl_old_fields(result: Conversion, raw: dict[str, Any], version: str, source: str) -> None:
    """Fields of TRL `version` (its GRPOConfig and TrainingArguments) that today's lack: `max_prompt_length` keeps its
    meaning; the others are mapped onto what replaced them, noted as inert, or refused naming the release
    (`config.old_fields`, as `trl_defaults:` reads them at load)."""
    from grpokit.config.old_fields import read_old_fields
    from grpokit.config.trl_fields import trl_field_names

    current = set(trl_field_names()) | set(trl_cli_keys()) | set(LAUNCH_KEYS)
    old = {key: value for key, value in raw.items() if key not in current and key != "max_prompt_length"}
    if raw.get("max_prompt_length") is not None:
        result.set("max_prompt_length", raw["max_prompt_length"], f"TRL {version} cut prompts to their last max_prompt_length tokens")
        result.set("truncate_prompts", True, "as TRL did (grpokit's own default stops at a longer prompt)")
    if not old:
        return
    explicit = {key: value for key, value in raw.items() if key in trl_field_names()}
    reading = read_old_fields(old, version, explicit=explicit, source=source)
    for key, value in reading.trl_args.items():
        result.config[key] = value
    for override in reading.overrides:
        result.note(override.line())


def _trl_launch(result: Conversion, raw: dict[str, Any], accelerate_config: str | None) -> None:
    """`trl grpo`'s `accelerate launch` keys: grpokit reads the same keys (`config.launch_keys`), so they are kept."""
    given = raw.get("accelerate_config")
    if accelerate_config and given is not None and given != accelerate_config:
        raise ConfigError(
            f"--accelerate-config {accelerate_config} and the file's accelerate_config: {given} differ",
            where="accelerate_config",
            fix="give one of them",
        )
    if accelerate_config or given is not None:
        result.set("distributed", accelerate_config or given, "the accelerate config file: its mixed precision and process count")
    for key in LAUNCH_KEYS:
        if key != "accelerate_config" and raw.get(key) is not None:
            result.set(key, raw[key], f"{key}: the launch, as trl grpo hands it to accelerate launch")


def _trl_model(result: Conversion, raw: dict[str, Any]) -> None:
    from grpokit.config.trl_cli import RENAMED_KEYS, trl_class

    raw = {RENAMED_KEYS.get(key, key): value for key, value in raw.items()}
    if not raw.get("model_name_or_path"):
        raise ConfigError("no model_name_or_path", fix="add the model_name_or_path the config was written for")
    defaults = {f.name: f.default for f in dataclasses.fields(trl_class("trl", "ModelConfig"))}
    for key, option in OPTION_FOR_KEY.items():
        value = raw.get(key, defaults.get(key))
        if key == "model_revision" and value == "main":
            continue
        if key == "dtype" and value is None:
            value = "auto"
        why = key if key in raw else f"TRL ModelConfig's default {key}: {show(defaults.get(key))}"
        result.set(option, value, why)
    for key in SAME_NAME_OPTIONS:
        if key in raw or defaults.get(key) not in (None, False):
            why = key if key in raw else "TRL ModelConfig's default"
            result.set(key, raw.get(key, defaults.get(key)), why)
    if not raw.get("lora_target_modules"):
        result.set("lora_target_modules", None, "PEFT's default modules for the model's architecture, as trl grpo")


def _trl_tracking(result: Conversion, raw: dict[str, Any]) -> None:
    """`report_to: wandb` logged to $WANDB_PROJECT ('huggingface' unset); grpokit turns W&B on by its project."""
    report_to = raw.get("report_to")
    names = [report_to] if isinstance(report_to, str) else list(report_to or [])
    if "wandb" in names or "all" in names:
        project = os.environ.get("WANDB_PROJECT", "huggingface")
        result.set("wandb_project", project, "report_to: wandb: transformers logged to $WANDB_PROJECT, default 'huggingface'")
    if "mlflow" in names or "all" in names:
        result.note(
            "report_to: mlflow: set mlflow_uri and mlflow_experiment_name (transformers read MLFLOW_TRACKING_URI and "
            "MLFLOW_EXPERIMENT_NAME)"
        )
    others = [name for name in names if name not in ("wandb", "mlflow", "all", "none")]
    if others:
        result.set("report_to", others, "report_to: the trackers grpokit leaves to transformers")


def _trl_data(result: Conversion, raw: dict[str, Any]) -> None:
    if raw.get("datasets"):  # trl grpo loads the mixture and ignores dataset_name
        mixture = {key: raw[key] for key in MIXTURE_KEYS if raw.get(key) is not None}
        result.set("dataset_mixture", mixture, "datasets (+ test_split_size): loaded by TRL's get_dataset, as trl grpo does")
        if raw.get("dataset_name"):
            result.note(f"dataset_name: {show(raw['dataset_name'])} left out: trl grpo loads datasets: instead")
        return
    if not raw.get("dataset_name"):
        result.note("no dataset_name: set train_dataset_path or load_dataset.path before training")
        return
    section = {section_key: raw[key] for key, section_key in DATASET_KEYS.items() if key in raw}
    result.set("load_dataset", section, "dataset_name (+ config, splits): datasets.load_dataset, a Hub id or a local folder")


def _trl_rewards(result: Conversion, raw: dict[str, Any], kind: str, source: str) -> None:
    """The rewards as `trl grpo` reads them (`config.trl_cli.trl_grpo_reward_specs`): a name it does not know stays
    an error, and `reward_weights` must give one weight per reward, as `trl grpo` itself requires."""
    specs = trl_grpo_reward_specs(
        raw.get("reward_model_name_or_path"),
        raw.get("reward_funcs"),
        raw.get("reward_weights"),
        trust_remote_code=bool(raw.get("trust_remote_code")),
        source=source,
    )
    if not specs:
        result.note("no reward_model_name_or_path or reward_funcs: add rewards: before training")
        return
    alone = kind == "aws-accelerate" and len(specs) == 1
    result.set("rewards", specs, "grpo_advanced.py scored with the reward model alone" if alone else "trl grpo's rewards, in its order")
