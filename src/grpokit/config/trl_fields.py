"""TRL's fields in a grpokit config: their types and defaults read from TRL itself, and TRL's own rules.

grpokit never copies TRL's field list. Every top-level key that is not grpokit's own must be a field
of `trl.GRPOConfig` (which includes transformers' `TrainingArguments`); its value is type-checked
against TRL's annotation when the file loads, and the whole set is validated by TRL's own class:
`check_batch_arithmetic` runs TRL's rules for the job's process count, `build_grpo_config` builds the
real `GRPOConfig` of this process.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import typing
from typing import Any

from pydantic import PydanticSchemaGenerationError, TypeAdapter, ValidationError

from grpokit.compat.trl_internals import grpo_rules_check
from grpokit.config.trl_names import dataclass_field_names
from grpokit.config.value_rules import trl_normalised_value
from grpokit.errors import ConfigError

# TRL defaults that grpokit changes, each for a reason a user of a training tool would expect.
GRPOKIT_TRL_DEFAULTS: dict[str, Any] = {
    # One metrics.jsonl line and one progress update per optimizer step.
    "logging_steps": 1,
    # Periodic checkpoints so a crash or a spot interruption loses little work; the last two are kept.
    "save_steps": 50,
    "save_total_limit": 2,
}
# TRL fields that are secrets: kept out of GRPOConfig, which transformers pickles into every checkpoint.
SECRET_TRL_FIELDS = ("hub_token",)
# Where the rules check pretends the checkpoints go; it writes nothing.
RULES_CHECK_OUTPUT_DIR = "grpokit-rules-check"
GRPOKIT_MODULE_PATH = re.compile(r"\bgrpokit(\.\w+)*\.(?=[A-Z])")  # grpokit.data.options.DatasetOptions


def trl_field_names() -> frozenset[str]:
    """Every `GRPOConfig` field name, read from TRL's source without importing TRL (see `trl_names`)."""
    return dataclass_field_names("trl", "GRPOConfig") or frozenset(trl_field_types())


@functools.cache
def trl_field_types() -> dict[str, Any]:
    """Every `GRPOConfig` field name with its type annotation, read from TRL itself."""
    from trl import GRPOConfig

    hints = typing.get_type_hints(GRPOConfig)
    return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(GRPOConfig) if f.init}


@functools.cache
def trl_defaults() -> dict[str, Any]:
    """Every `GRPOConfig` field's default, as the installed TRL declares it."""
    from trl import GRPOConfig

    return {f.name: f.default for f in dataclasses.fields(GRPOConfig) if f.default is not dataclasses.MISSING}


@functools.cache
def _type_adapter(annotation: Any) -> TypeAdapter | None:
    try:
        return TypeAdapter(annotation)
    except (PydanticSchemaGenerationError, TypeError):  # pydantic cannot model it; TRL's own class still checks
        return None


def check_trl_value(key: str, value: Any, source: str) -> Any:
    """`value` checked (and lax-converted) against the type TRL declares for `key`.

    Raises:
        ConfigError: the value is not of the declared type.
    """
    annotation = trl_field_types()[key]
    adapter = _type_adapter(annotation)
    if adapter is None:
        return value
    try:
        # Lax validation also reads YAML 1.1 strings such as '3e-5' as the number they mean.
        checked = adapter.validate_python(value)
    except ValidationError:
        accepted, normalised = trl_normalised_value(key, value)  # TRL converts some itself: scale_rewards: false
        if accepted and _conforms(adapter, normalised):
            return normalised
        raise ConfigError(
            f"'{key}' has the wrong type: got {value!r} ({type(value).__name__}), expected {type_name(annotation)}",
            where=source,
            fix=f"set {key} to a value of type {type_name(annotation)}",
        ) from None
    if isinstance(value, int) and not isinstance(value, bool) and isinstance(checked, float) and checked == value:
        return value  # `logging_steps: 1` (a float field: it may be a ratio) stays the integer the file wrote
    return checked


def _conforms(adapter: TypeAdapter, value: Any) -> bool:
    try:
        adapter.validate_python(value, strict=True)
    except ValidationError:
        return False
    return True


def type_name(annotation: Any) -> str:
    """A type annotation as a reader writes it: `int | None`, `str`, `DatasetOptions` (no module path for grpokit's)."""
    text = str(annotation).replace("typing.", "")
    text = GRPOKIT_MODULE_PATH.sub("", text)
    return text.removeprefix("<class '").removesuffix("'>")


def build_grpo_config(trl_args: dict[str, Any], *, output_dir: str, source: str):
    """Construct `trl.GRPOConfig`, turning its validation errors into a `ConfigError`."""
    from trl import GRPOConfig

    try:
        return GRPOConfig(output_dir=output_dir, **trl_args)
    except (ValueError, TypeError) as error:
        raise _rejected(str(error), source) from None


def _rejected(message: str, source: str) -> ConfigError:
    return ConfigError(
        f"TRL rejected the training options: {message}",
        where=source,
        fix="change the options named above (they are fields of trl.GRPOConfig)",
    )


def world_size_from_env() -> int:
    """The process count of this job as torchrun / accelerate set it (1 when launched plainly)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def check_batch_arithmetic(trl_args: dict[str, Any], *, world_size: int, source: str) -> None:
    """TRL's own GRPOConfig rules for a job of `world_size` processes, with the numbers explained.

    TRL decides (the generation batch must split into whole groups of `num_generations`, the eval
    batch too, a given `generation_batch_size` must be a multiple of the global batch, ...); when it
    says no, the message shows how TRL derived the generation batch from this config and which
    `num_generations` values would work.

    Raises:
        ConfigError: TRL rejects the fields for that many processes.
    """
    check = grpo_rules_check(trl_args, world_size=world_size, output_dir=RULES_CHECK_OUTPUT_DIR)
    if check.error is None:
        return
    resolved = check.resolved
    num_generations, generation_batch = resolved.get("num_generations"), resolved.get("generation_batch_size")
    if isinstance(num_generations, int) and num_generations < 2:
        raise ConfigError(
            f"num_generations={num_generations} leaves no group to compare: GRPO needs at least 2 completions per prompt",
            where=source,
            fix="set num_generations to 2 or more",
        )
    if isinstance(generation_batch, int) and num_generations and generation_batch % num_generations:
        raise _groups_error(resolved, world_size, source, given=set(trl_args))
    raise _rejected(check.error, source)


def _groups_error(resolved: dict[str, Any], world_size: int, source: str, *, given: set[str]) -> ConfigError:
    num_generations, generation_batch = resolved["num_generations"], resolved["generation_batch_size"]
    if "generation_batch_size" in given:
        how = f"generation_batch_size = {generation_batch}"
    else:
        steps = resolved["steps_per_generation"]
        derived = "" if "steps_per_generation" in given else " (= gradient_accumulation_steps)"
        how = (
            f"per_device_train_batch_size ({resolved['per_device_train_batch_size']}) x steps_per_generation"
            f"{derived} ({steps}) x processes ({world_size}) = {generation_batch}"
        )
    divisors = [d for d in range(2, generation_batch + 1) if generation_batch % d == 0]
    return ConfigError(
        f"num_generations={num_generations} must divide the generation batch: {how}",
        where=source,
        fix=(f"use num_generations in {divisors}" if divisors else "increase per_device_train_batch_size")
        + f", or make the batch a multiple of {num_generations}",
    )
