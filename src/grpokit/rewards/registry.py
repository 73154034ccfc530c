"""The built-in rewards by name, and `build_reward`: a name and params in, a reward function out."""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from grpokit.errors import RewardConfigError
from grpokit.rewards.common import RewardFunc, check_parameter_names
from grpokit.rewards.http import http_reward
from grpokit.rewards.isolated import make_isolated_factory
from grpokit.rewards.json_valid import json_valid_reward
from grpokit.rewards.length import length_reward
from grpokit.rewards.match import exact_match_reward, numeric_match_reward
from grpokit.rewards.math_equivalence import math_verify_reward
from grpokit.rewards.penalties import overlong_penalty_reward, repetition_penalty_reward
from grpokit.rewards.regex import regex_reward
from grpokit.rewards.reward_model import reward_model_reward
from grpokit.rewards.rouge_l import rouge_l_reward
from grpokit.rewards.tag_format import format_reward
from grpokit.rewards.user import load_user_reward, looks_like_user_path

# Every built-in reward, by the name a config uses. A factory takes keyword parameters only.
REGISTRY: dict[str, Callable[..., RewardFunc]] = {
    "rouge_l": rouge_l_reward,
    "length": length_reward,
    "format": format_reward,
    "exact_match": exact_match_reward,
    "numeric_match": numeric_match_reward,
    "math_verify": math_verify_reward,
    "regex": regex_reward,
    "json_valid": json_valid_reward,
    "repetition_penalty": repetition_penalty_reward,
    "overlong_penalty": overlong_penalty_reward,
    "reward_model": reward_model_reward,
    "http": http_reward,
}


def build_reward(name: str, **params: Any) -> RewardFunc:
    """Build one reward: a built-in by registry name, or a user function by dotted or file path.

    Relative file paths start at the current directory (`build_rewards` takes the config's directory).
    The result follows TRL's contract `fn(prompts, completions, **kwargs) -> list[float | None]` and has
    `__name__` (the registry name or the user function's name) and `required_columns`.

    Raises:
        RewardConfigError: unknown name (with the closest valid names), unknown or invalid parameter, or a
            user reward that cannot be imported.
    """
    return resolve_reward(name, params, base_dir=None)


def resolve_reward(name: str, params: dict[str, Any], *, base_dir: Path | None) -> RewardFunc:
    """`build_reward` with relative file paths resolved against `base_dir`."""
    if name in REGISTRY:
        return _build_builtin(name, params)
    if looks_like_user_path(name):
        return load_user_reward(name, params, base_dir=base_dir)
    close = difflib.get_close_matches(name, REGISTRY, n=3, cutoff=0.5)
    raise RewardConfigError(
        f'unknown reward "{name}"',
        where=f"built-in rewards: {', '.join(REGISTRY)}",
        fix=(f"did you mean {' or '.join(repr(c) for c in close)}? " if close else "")
        + "a user reward is named 'package.module:function' or 'path/to/file.py:function'",
    )


def _build_builtin(name: str, params: dict[str, Any]) -> RewardFunc:
    factory = REGISTRY[name]
    valid = list(inspect.signature(factory).parameters)
    check_parameter_names(name, params, valid)
    required = [
        key
        for key, parameter in inspect.signature(factory).parameters.items()
        if parameter.default is inspect.Parameter.empty and parameter.kind is not inspect.Parameter.VAR_KEYWORD
    ]
    missing = [key for key in required if key not in params]
    if missing:
        raise RewardConfigError(
            f'reward "{name}" needs the parameter{"s" if len(missing) > 1 else ""} {", ".join(missing)}',
            where=f"valid parameters of {name}: {', '.join(valid)}",
            fix=f"add {', '.join(f'{key}: ...' for key in missing)} to this reward (see docs/rewards.md)",
        )
    try:
        return factory(**params)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc']))}={e['input']!r}: {e['msg']}" for e in error.errors()
        )
        raise RewardConfigError(
            f'reward "{name}" has an invalid parameter value: {problems}',
            fix=f"see the parameters of {name} in docs/rewards.md",
        ) from None


# `isolated` runs any other reward, so it is built around this module's `build_reward`.
REGISTRY["isolated"] = make_isolated_factory(build_reward)
