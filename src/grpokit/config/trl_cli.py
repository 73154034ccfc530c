"""The keys of a `trl grpo --config` YAML besides GRPOConfig's: TRL's ModelConfig and ScriptArguments.

A YAML written for `trl grpo` (or for the AWS sample's accelerate variant, `grpo_advanced.py`) names
its model with `model_name_or_path`, its LoRA with `use_peft`, its data with `dataset_name`. grpokit
accepts those keys, recognised by the field names of TRL's own `ModelConfig`, `ScriptArguments` and
`GRPOScriptArguments` (read from the installed TRL, never copied), validated by constructing those
classes, and mapped onto grpokit's options:

| TRL key | grpokit option |
|---|---|
| `model_name_or_path` | `model_id` |
| `model_revision` | `revision` |
| `dtype` (`torch_dtype` before TRL 0.2x) | `dtype` |
| `use_peft` | `use_lora` |
| `lora_r`, `lora_alpha`, `lora_dropout`, `lora_target_modules`, `lora_modules_to_save`, `use_rslora`, `use_dora`, `load_in_4bit`, `load_in_8bit`, `attn_implementation` | the same names |
| `dataset_name`, `dataset_config`, `dataset_train_split`, `dataset_test_split` | `load_dataset: {path, name, train_split, test_split}` |
| `datasets`, `test_split_size` (TRL's `DatasetMixtureConfig`; `streaming: true` is refused) | `dataset_mixture: {datasets, test_split_size}` |
| `reward_model_name_or_path`, `reward_funcs` (+ GRPOConfig's `reward_weights`) | `rewards:` |

A file that names its model with `model_name_or_path` is a `trl grpo` config: the ModelConfig keys it
leaves unset take TRL's ModelConfig defaults (`use_peft: false` is full fine-tuning, `lora_r: 16`,
`lora_alpha: 32`, `dtype: float32`, PEFT's default target modules), so it trains what it trained there.
A key grpokit cannot honour (`lora_task_type` other than CAUSAL_LM, `bnb_4bit_quant_type: fp4`,
`dataset_streaming: true`, ...) is an error naming it.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import typing
from dataclasses import dataclass, field
from typing import Any

from pydantic import PydanticSchemaGenerationError, TypeAdapter, ValidationError

from grpokit.config.overrides import INERT, Override
from grpokit.config.trl_names import dataclass_field_names
from grpokit.errors import ConfigError

TRL_CLI_CLASSES = (
    ("trl", "ModelConfig"),
    ("trl", "ScriptArguments"),
    ("trl.scripts.grpo", "GRPOScriptArguments"),
    ("trl", "DatasetMixtureConfig"),
)
MIXTURE_KEYS = {"datasets": "datasets", "test_split_size": "test_split_size"}  # DatasetMixtureConfig -> dataset_mixture:
RENAMED_KEYS = {"torch_dtype": "dtype"}  # ModelConfig's older spelling
# ModelConfig / ScriptArguments key -> the grpokit option it sets.
OPTION_FOR_KEY = {
    "model_name_or_path": "model_id",
    "model_revision": "revision",
    "dtype": "dtype",
    "use_peft": "use_lora",
}
# ModelConfig fields grpokit has an option of the same name for.
SAME_NAME_OPTIONS = (
    "lora_r", "lora_alpha", "lora_dropout", "lora_target_modules", "lora_modules_to_save", "use_rslora",
    "use_dora", "load_in_4bit", "load_in_8bit", "attn_implementation",
)  # fmt: skip
DATASET_KEYS = {"dataset_name": "path", "dataset_config": "name", "dataset_train_split": "train_split", "dataset_test_split": "test_split"}
# trl grpo's built-in reward names -> grpokit's reward entries computing the same thing.
TRL_REWARDS: dict[str, dict[str, Any]] = {
    "accuracy_reward": {"name": "trl.rewards:accuracy_reward"},
    "reasoning_accuracy_reward": {"name": "trl.rewards:reasoning_accuracy_reward"},
    "think_format_reward": {"name": "trl.rewards:think_format_reward"},
    # trl grpo builds it with these values (trl/scripts/grpo.py)
    "get_soft_overlong_punishment": {"name": "overlong_penalty", "max_completion_length": 1280, "cache_length": 256},
}
# Keys trl grpo accepts but does not read either: accepted, no effect (said once, as an override).
NO_EFFECT_KEYS = {"ignore_bias_buffers": "trl grpo's script accepts it and does not read it either"}
TRL_CLI_MARKER = "model_name_or_path"  # a file naming its model this way is a `trl grpo` config


@dataclass
class TrlCliOptions:
    """What a file's TRL CLI keys set: grpokit options, and the TRL fields they consumed.

    Merge as `{**defaults, **file's grpokit options, **options}`: TRL's defaults yield to the file,
    and `options` (the file's own TRL keys, already checked against the grpokit options) win.
    """

    defaults: dict[str, Any] = field(default_factory=dict)  # TRL ModelConfig defaults for a `trl grpo` config
    options: dict[str, Any] = field(default_factory=dict)
    consumed_trl_fields: set[str] = field(default_factory=set)  # GRPOConfig fields moved into options (reward_weights)
    overrides: list[Override] = field(default_factory=list)  # keys accepted that act on nothing


@functools.cache
def trl_cli_keys() -> frozenset[str]:
    """Every field name of TRL's ModelConfig, ScriptArguments and GRPOScriptArguments, plus the renamed ones."""
    names: set[str] = set(RENAMED_KEYS)
    for module, class_name in TRL_CLI_CLASSES:
        found = dataclass_field_names(module, class_name)
        names |= set(found) if found is not None else {f.name for f in dataclasses.fields(trl_class(module, class_name))}
    return frozenset(names)


def trl_class(module: str, class_name: str):
    """TRL's class `module.class_name` (this imports TRL)."""
    import importlib

    return getattr(importlib.import_module(module), class_name)


def is_trl_cli_config(raw_keys: set[str]) -> bool:
    """A file that names its model with `model_name_or_path` (and not `model_id`) is a `trl grpo` config."""
    return TRL_CLI_MARKER in raw_keys and "model_id" not in raw_keys


def options_from_trl_cli(
    cli_keys: dict[str, Any], ours: dict[str, Any], theirs: dict[str, Any], source: str
) -> TrlCliOptions:
    """Validate a file's TRL CLI keys with TRL's own classes and map them onto grpokit's options.

    `cli_keys`: the file's keys that are ModelConfig / ScriptArguments / GRPOScriptArguments fields
    and not grpokit's; `ours`: the file's grpokit options (they may share a name with a ModelConfig
    field: `lora_r`, `load_in_4bit`, ...); `theirs`: its GRPOConfig fields.

    Raises:
        ConfigError: a value TRL's class rejects, a key grpokit cannot honour, or a TRL key and the
            grpokit option it maps onto both set to different values.
    """
    cli_keys = {RENAMED_KEYS.get(key, key): value for key, value in cli_keys.items()}
    _validate_with_trl(cli_keys, ours, source)
    _refuse_what_cannot_be_honoured(cli_keys, ours, source)
    mapped = TrlCliOptions()
    if is_trl_cli_config(set(cli_keys) | set(ours)):
        mapped.defaults.update(_model_config_defaults())
    for key, option in OPTION_FOR_KEY.items():
        if key in cli_keys:
            value = "auto" if key == "dtype" and cli_keys[key] is None else cli_keys[key]
            _set_option(mapped.options, ours, option, value, key, source)
    dataset = {section_key: cli_keys[key] for key, section_key in DATASET_KEYS.items() if key in cli_keys}
    if cli_keys.get("datasets"):  # trl grpo loads the mixture and ignores dataset_name (with a warning)
        mixture = {section_key: cli_keys[key] for key, section_key in MIXTURE_KEYS.items() if key in cli_keys}
        _set_option(mapped.options, ours, "dataset_mixture", mixture, "datasets", source)
        mapped.overrides += [
            Override(key, cli_keys[key], INERT, "datasets: is set, and trl grpo loads that mixture instead")
            for key in ("dataset_name", "dataset_config")
            if cli_keys.get(key) is not None
        ]
    elif dataset:
        _set_option(mapped.options, ours, "load_dataset", dataset, "dataset_name", source)
    if "reward_funcs" in cli_keys:
        _set_option(mapped.options, ours, "rewards", _reward_specs(cli_keys, ours, theirs, source), "reward_funcs", source)
        mapped.options["reward_model_name_or_path"] = None  # now the first entry of rewards:
        mapped.consumed_trl_fields.add("reward_weights")
    mapped.overrides += [
        Override(key, cli_keys[key], INERT, why) for key, why in NO_EFFECT_KEYS.items() if cli_keys.get(key)
    ]
    if cli_keys.get("test_split_size") is not None and not cli_keys.get("datasets"):
        mapped.overrides.append(Override("test_split_size", cli_keys["test_split_size"], INERT, "only a datasets: mixture reads it"))
    return mapped


def refused_parser_key(key: str, source: str) -> ConfigError | None:
    """The error for a key TRL's `TrlParser` reads itself (`env:`) and grpokit does not; None for any other key."""
    if key != "env":
        return None
    return ConfigError(
        "env: sets environment variables for `trl grpo` (TRL's TrlParser); grpokit does not change the environment "
        "from a config file",
        where=source,
        fix="remove env: and export the variables before running grpokit (secrets such as HF_TOKEN belong there too)",
    )


def _set_option(options: dict[str, Any], ours: dict[str, Any], option: str, value: Any, key: str, source: str) -> None:
    if option in ours and ours[option] != value:
        raise ConfigError(
            f"'{key}' (TRL's name) and '{option}' (grpokit's) are both set, to different values",
            where=source,
            fix=f"keep one of them: '{key}' is read as '{option}'",
        )
    options[option] = value


def _model_config_defaults() -> dict[str, Any]:
    """TRL ModelConfig's defaults for the grpokit options a `trl grpo` config leaves unset."""
    defaults = {f.name: f.default for f in dataclasses.fields(trl_class("trl", "ModelConfig"))}
    values = {option: defaults[key] for key, option in OPTION_FOR_KEY.items() if key != "model_name_or_path"}
    values.update({name: defaults[name] for name in SAME_NAME_OPTIONS if name in defaults})
    values["dtype"] = values.get("dtype") or "auto"
    values["revision"] = None if values.get("revision") == "main" else values.get("revision")
    return values


def _validate_with_trl(cli_keys: dict[str, Any], ours: dict[str, Any], source: str) -> None:
    """Each value type-checked against TRL's annotation, then TRL's classes constructed (their own checks)."""
    for module, class_name in TRL_CLI_CLASSES:
        cls = trl_class(module, class_name)
        names = {f.name for f in dataclasses.fields(cls) if f.init}
        hints = typing.get_type_hints(cls)
        given = {key: value for key, value in {**ours, **cli_keys}.items() if key in names}
        for key in set(given) & set(cli_keys):
            _check_type(key, given[key], hints.get(key, Any), class_name, source)
        try:
            cls(**copy.deepcopy(given))  # DatasetMixtureConfig turns the dicts of its list into objects in place
        except (ValueError, TypeError) as error:
            raise ConfigError(f"TRL's {class_name} rejected these keys: {error}", where=source, fix="change the keys named above") from None


def _check_type(key: str, value: Any, annotation: Any, class_name: str, source: str) -> None:
    try:
        adapter = TypeAdapter(annotation)
    except (PydanticSchemaGenerationError, TypeError):
        return
    try:
        adapter.validate_python(value)
    except ValidationError:
        raise ConfigError(
            f"'{key}' has the wrong type: got {value!r}, TRL's {class_name} expects {annotation}",
            where=source,
            fix=f"set {key} as `trl grpo` would read it",
        ) from None


def _refuse_what_cannot_be_honoured(cli_keys: dict[str, Any], ours: dict[str, Any], source: str) -> None:
    refusals = {
        "lora_task_type": (cli_keys.get("lora_task_type", "CAUSAL_LM") != "CAUSAL_LM", "grpokit trains causal LMs: only CAUSAL_LM"),
        "bnb_4bit_quant_type": (cli_keys.get("bnb_4bit_quant_type", "nf4") != "nf4", "grpokit's 4-bit loading is NF4"),
        "use_bnb_nested_quant": (
            cli_keys.get("use_bnb_nested_quant") is False and bool(ours.get("load_in_4bit")),
            "grpokit's 4-bit loading always uses nested (double) quantization",
        ),
        "bnb_4bit_quant_storage": (
            cli_keys.get("bnb_4bit_quant_storage") is not None,
            "grpokit picks the storage dtype (the compute dtype under FSDP)",
        ),
        "lora_target_parameters": (bool(cli_keys.get("lora_target_parameters")), "grpokit targets modules, not parameters"),
        "dataset_streaming": (bool(cli_keys.get("dataset_streaming")), "grpokit reads the dataset into memory"),
        "streaming": (bool(cli_keys.get("streaming")), "grpokit reads the dataset mixture into memory"),
        "dataset_train_split": (
            bool(cli_keys.get("datasets")) and cli_keys.get("dataset_train_split", "train") != "train",
            "with datasets:, the mixture's training split is 'train', as TRL's get_dataset names it",
        ),
        "dataset_test_split": (
            bool(cli_keys.get("datasets")) and cli_keys.get("dataset_test_split", "test") != "test",
            "with datasets:, the mixture's test split is 'test' (test_split_size), as TRL's get_dataset names it",
        ),
    }
    for key, (refused, why) in refusals.items():
        if refused:
            raise ConfigError(
                f"'{key}: {cli_keys[key]!r}' cannot be honoured: {why}",
                where=source,
                fix=f"remove '{key}' (see docs/migrating.md)",
            )
    if "train_dataset_path" in ours and "dataset_name" in cli_keys:
        raise ConfigError(
            "both train_dataset_path and dataset_name are set",
            where=source,
            fix="keep one: dataset_name loads through datasets.load_dataset (a Hub id or a local folder)",
        )


def _reward_specs(cli_keys: dict[str, Any], ours: dict[str, Any], theirs: dict[str, Any], source: str) -> list[dict[str, Any]]:
    """trl grpo's rewards in its order (the reward model first, then reward_funcs), with reward_weights."""
    return trl_grpo_reward_specs(
        ours.get("reward_model_name_or_path"),
        cli_keys.get("reward_funcs"),
        theirs.get("reward_weights"),
        trust_remote_code=bool(ours.get("trust_remote_code")),
        source=source,
    )


def trl_grpo_reward_specs(
    reward_model: str | None,
    reward_funcs: list[str] | None,
    weights: list[float] | None,
    *,
    trust_remote_code: bool,
    source: str,
) -> list[dict[str, Any]]:
    """The `rewards:` entries `trl grpo` would score with: the reward model first, then `reward_funcs` in order,
    each with its `reward_weights` value. `load_config` and `grpokit convert trl` both read a file's rewards here.

    Raises:
        ConfigError: a reward name `trl grpo` does not know (never read as one of grpokit's rewards of the same
            name: open-r1's `format` is not grpokit's `format`), or as many weights as rewards not given.
    """
    specs: list[dict[str, Any]] = []
    if reward_model:
        specs.append({"name": "reward_model", "model_name_or_path": reward_model})
        if trust_remote_code:  # TRL loads the reward model with the run's trust_remote_code
            specs[-1]["trust_remote_code"] = True
    for name in reward_funcs or []:
        if name in TRL_REWARDS:
            specs.append(dict(TRL_REWARDS[name]))
        elif "." in name:
            specs.append({"name": name})  # a dotted import path, as trl grpo reads it
        else:
            raise ConfigError(
                f"reward_funcs: '{name}' is neither one of trl grpo's rewards nor an import path",
                where=source,
                fix=f"use one of {', '.join(TRL_REWARDS)}, a dotted path 'package.module.function', or grpokit's rewards:",
            )
    if weights is not None:
        if len(weights) != len(specs):
            raise ConfigError(
                f"reward_weights has {len(weights)} values for {len(specs)} rewards",
                where=source,
                fix="give one weight per reward (the reward model first, then reward_funcs in order)",
            )
        specs = [{**spec, "weight": weight} for spec, weight in zip(specs, weights)]
    return specs
