"""User rewards: a function named by dotted path (`my_pkg.rewards:fn`) or file path (`./rewards.py:fn`).

`import_user_object` is the one way grpokit imports user code named in a config: rewards here, and the
agent keys' tools, environments and rollout functions (`grpokit.rewards.agent`).
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from grpokit.errors import GrpokitError, RewardConfigError
from grpokit.rewards.common import TRL_REWARD_KWARGS, RewardFunc, check_parameter_names

_FORMAT_FIX = (
    "name a user {kind} as 'package.module:function', 'package.module.function' or "
    "'path/to/file.py:function' (relative paths start at the config file's directory)"
)


def looks_like_user_path(name: str) -> bool:
    """Whether `name` is a dotted or file path rather than a built-in reward name."""
    return any(marker in name for marker in (":", ".", "/"))


def load_user_reward(path: str, params: dict[str, Any], *, base_dir: Path | None = None) -> RewardFunc:
    """Import the function `path` names and bind `params` to it as keyword arguments.

    The function may be async (TRL awaits it concurrently with the other async rewards). Each key of
    `params` must be a named parameter of the function. The function must accept
    `**kwargs`, because GRPOTrainer passes every dataset column and its own extras to every reward.
    Its `required_columns` are its own attribute of that name, else its named parameters that have no
    default and are not filled by TRL or by `params`.

    Raises:
        RewardConfigError: the file or module is missing or fails to import, the attribute is missing or
            not callable, the function lacks `**kwargs`, or a param is not one of its parameters.
    """
    function = import_user_object(path, base_dir=base_dir)
    signature = _checked_signature(function, path)
    _check_params(signature, params, path)
    reward_class = AsyncUserReward if _is_async(function) else UserReward
    return reward_class(function, params, _required_columns(function, signature, params))


def import_user_object(
    path: str, *, base_dir: Path | None, kind: str = "reward", error: type[GrpokitError] = RewardConfigError
) -> Any:
    """The callable `path` names ('pkg.module:name', 'pkg.module.name' or 'file.py:name', relative to `base_dir`).

    `kind` names it in messages ("reward", "tool", "environment", ...), raised as `error`.

    Raises:
        `error`: the path names no attribute, the file or module is missing or fails to import, the
            attribute is missing (the closest callables suggested) or not callable.
    """
    location, _, attribute = _split(path, kind, error)
    if _is_file(location):
        module = _import_file(location, base_dir, kind, error)
    else:
        module = _import_module(location, base_dir, kind, error)
    return _attribute(module, attribute, path, kind, error)


class UserReward:
    """A user's function with its config params bound; `__name__` is the function's name."""

    def __init__(
        self, function: Callable[..., list], params: dict[str, Any], columns: frozenset[str]
    ) -> None:
        self.function = function
        self.params = dict(params)
        self.required_columns = columns
        self.__name__ = getattr(function, "__name__", type(function).__name__)

    def __call__(self, prompts: list, completions: list, **kwargs: Any) -> list:
        # Config params win over a dataset column of the same name.
        return self.function(prompts=prompts, completions=completions, **{**kwargs, **self.params})


class AsyncUserReward(UserReward):
    """An async user reward with its params bound: TRL awaits it on its event loop."""

    async def __call__(self, prompts: list, completions: list, **kwargs: Any) -> list:
        return await self.function(prompts=prompts, completions=completions, **{**kwargs, **self.params})


def _is_async(function: Any) -> bool:
    return inspect.iscoroutinefunction(function) or (
        not inspect.isroutine(function) and inspect.iscoroutinefunction(type(function).__call__)
    )


def _split(path: str, kind: str, error: type[GrpokitError]) -> tuple[str, str, str]:
    if ":" in path:
        return path.rpartition(":")
    if not _is_file(path) and "." in path.strip("."):
        return path.rpartition(".")
    raise error(f'{kind} "{path}" does not say which function to use', fix=_FORMAT_FIX.format(kind=kind))


def _is_file(location: str) -> bool:
    return location.endswith(".py") or "/" in location or "\\" in location


def _import_file(location: str, base_dir: Path | None, kind: str, error_class: type[GrpokitError]) -> ModuleType:
    file = Path(location).expanduser()
    if not file.is_absolute():
        file = (base_dir or Path.cwd()) / file
    if not file.is_file():
        raise error_class(
            f"{kind} file {location} does not exist", where=str(file.resolve()), fix=_FORMAT_FIX.format(kind=kind)
        )
    # A stable, unique module name: the same file loaded twice is one module, two files never clash.
    digest = hashlib.sha1(str(file.resolve()).encode()).hexdigest()[:10]
    module_name = f"grpokit_user_rewards.{file.stem}_{digest}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, file)
    assert spec is not None and spec.loader is not None  # a .py file always has a source loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # before exec, so dataclasses and pickling inside it work
    try:
        spec.loader.exec_module(module)
    except Exception as error:
        del sys.modules[module_name]
        raise error_class(
            f"importing {kind} file {location} raised {type(error).__name__}: {error}", where=str(file)
        ) from error
    return module


def _import_module(module_name: str, base_dir: Path | None, kind: str, error_class: type[GrpokitError]) -> ModuleType:
    # Like `python -m`, look in the current directory too, then next to the config; appended, so
    # nothing already importable is shadowed.
    for directory in (Path.cwd(), base_dir):
        if directory is not None and str(directory) not in sys.path:
            sys.path.append(str(directory))
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        raise error_class(
            f'{kind} module "{module_name}" cannot be imported: {error}',
            where=f"searched sys.path, the current directory and {base_dir or 'no config directory'}",
            fix="install the package, or put the module next to the config file, or use a file path",
        ) from error
    except Exception as error:
        raise error_class(
            f'importing {kind} module "{module_name}" raised {type(error).__name__}: {error}'
        ) from error


def _attribute(module: ModuleType, attribute: str, path: str, kind: str, error: type[GrpokitError]) -> Callable[..., Any]:
    if not hasattr(module, attribute):
        candidates = [
            name for name, value in vars(module).items() if callable(value) and not name.startswith("_")
        ]
        close = difflib.get_close_matches(attribute, candidates, n=1)
        raise error(
            f'{kind} "{path}": module {module.__name__} has no attribute "{attribute}"',
            where=f"callables in the module: {sorted(candidates)}",
            fix=f'did you mean "{close[0]}"?' if close else "check the function name after the ':'",
        )
    function = getattr(module, attribute)
    if not callable(function):
        raise error(
            f'{kind} "{path}": "{attribute}" is not callable (it is the {type(function).__name__} {function!r})'
        )
    return function


def _checked_signature(function: Callable[..., Any], path: str) -> inspect.Signature:
    signature = inspect.signature(function)
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values()):
        raise RewardConfigError(
            f'reward "{path}" does not accept **kwargs',
            fix="define it as def fn(prompts, completions, **kwargs): GRPOTrainer passes completion_ids, "
            "trainer_state, log_extra, log_metric and every dataset column to every reward",
        )
    return signature


def _check_params(signature: inspect.Signature, params: dict[str, Any], path: str) -> None:
    named = [
        name
        for name, p in signature.parameters.items()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and name not in TRL_REWARD_KWARGS
    ]
    check_parameter_names(path, params, named, otherwise="add it to the function's parameters or remove it")


def _required_columns(function: Any, signature: inspect.Signature, params: dict[str, Any]) -> frozenset[str]:
    declared = getattr(function, "required_columns", None)
    if declared is not None:
        return frozenset(declared)
    return frozenset(
        name
        for name, p in signature.parameters.items()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        and p.default is inspect.Parameter.empty
        and name not in TRL_REWARD_KWARGS
        and name not in params
    )
