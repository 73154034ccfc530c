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
from grpokit.config.trl_cli import DATASET_KEYS, OPTION_FOR_KEY, SAME_NAME_OPTIONS, TRL_REWARDS, trl_cli_keys
from grpokit.config.trl_versions import installed_trl_version, resolve_version, version_defaults
from grpokit.errors import ConfigError
from grpokit.secrets import is_secret_key


def convert_trl(
    raw: dict[str, Any], *, source: str, trl_version: str, accelerate_config: str | None, kind: str = "trl"
) -> Conversion:
    """A `trl grpo --config` YAML (or the accelerate sample's) as an explicit grpokit config."""
    from grpokit.config.trl_fields import trl_field_names

    version = resolve_version(trl_version, source)
    old_fields = set(version_defaults(version))  # TRL `version`'s GRPOConfig, which the file was written for
    known = set(trl_cli_keys()) | set(trl_field_names()) | old_fields
    unknown = sorted(key for key in map(str, raw) if key not in known)
    if unknown:
        raise ConfigError(
            f"{source} has keys `trl grpo` {version} does not read: {', '.join(unknown)}",
            where=source,
            fix="convert a `trl grpo --config` YAML: GRPOConfig, ModelConfig and ScriptArguments keys",
        )
    result = Conversion()
    why = "the accelerate sample pinned trl==0.16.1" if kind == "aws-accelerate" else f"written for TRL {version}"
    result.set("trl_defaults", version, f"{why}: every TRL field not set below takes its default")
    _trl_model(result, raw)
    _trl_data(result, raw)
    _trl_rewards(result, raw, kind)
    if accelerate_config:
        result.set("distributed", accelerate_config, "the accelerate config file: its mixed precision and process count")
    _trl_tracking(result, raw)
    for key, value in raw.items():
        if is_secret_key(key):
            result.note(f"{key} left out: secrets stay out of config files; export HF_TOKEN")
        elif key in trl_field_names() and key not in ("reward_weights", "output_dir", "report_to") and key not in result.config:
            result.set(key, value, f"{key} (GRPOConfig)")
    if "output_dir" in raw:
        result.set("output_dir", raw["output_dir"], "output_dir: the final model; checkpoints go to <output_dir>/checkpoints")
    _trl_old_fields(result, raw, version)
    return result


def _trl_old_fields(result: Conversion, raw: dict[str, Any], version: str) -> None:
    """Fields of the old TRL that today's TRL lacks: `max_prompt_length` keeps its meaning, the rest is noted."""
    from grpokit.config.trl_fields import trl_field_names

    for key in [key for key in raw if key not in trl_field_names() and key not in trl_cli_keys()]:
        if key == "max_prompt_length" and raw[key] is not None:
            result.set(key, raw[key], f"TRL {version} cut prompts to their last max_prompt_length tokens")
            result.set("truncate_prompts", True, "as TRL did (grpokit's own default stops at a longer prompt)")
        else:
            result.note(f"{key}: {show(raw[key])} left out: TRL {installed_trl_version()} has no {key}")


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
    if not raw.get("dataset_name"):
        result.note("no dataset_name: set train_dataset_path or load_dataset.path before training")
        return
    section = {section_key: raw[key] for key, section_key in DATASET_KEYS.items() if key in raw}
    result.set("load_dataset", section, "dataset_name (+ config, splits): datasets.load_dataset, a Hub id or a local folder")


def _trl_rewards(result: Conversion, raw: dict[str, Any], kind: str) -> None:
    specs: list[dict[str, Any]] = []
    if raw.get("reward_model_name_or_path"):
        specs.append({"name": "reward_model", "model_name_or_path": raw["reward_model_name_or_path"]})
    for name in raw.get("reward_funcs") or []:
        specs.append(dict(TRL_REWARDS.get(name, {"name": name})))
    if not specs:
        result.note("no reward_model_name_or_path or reward_funcs: add rewards: before training")
        return
    weights = raw.get("reward_weights")
    if weights is not None and len(weights) == len(specs):
        specs = [{**spec, "weight": weight} for spec, weight in zip(specs, weights)]
    alone = kind == "aws-accelerate" and len(specs) == 1
    result.set("rewards", specs, "grpo_advanced.py scored with the reward model alone" if alone else "trl grpo's rewards, in its order")
