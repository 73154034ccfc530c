"""The agent keys resolved: the tools, environments and rollout function a config names, imported and checked.

`resolve_agent(config)` imports what `tools:`, `environment:` and `rollout_func:` name (through
`rewards.user.import_user_object`, relative to the config file, as user rewards are), checks each the
way GRPOTrainer will use it, and returns an `AgentSetup` whose `trainer_kwargs()` go into
`GRPOTrainer(...)`. Every check runs before any weights load, each a `ConfigError` naming the key:

- a tool (and each public method of an environment) must give transformers a JSON schema
  (`get_json_schema`: a Google-style docstring with every argument, a type hint on each);
- an environment is built once with its `environment_args` and must define `reset`;
- with no `rewards:` list, some environment must define `get_reward()` (TRL's reward then, weight 1);
- a rollout function must take `(prompts, trainer)`.

TRL's own contracts (trl/trainer/grpo_trainer.py, 1.16): tools are plain or async functions; an
environment's methods, listed on its class (`inspect.getmembers(type(env), inspect.isfunction)`),
other than `reset`, `get_reward` and `_private` ones, are its tools; `reset(**row)` receives the row's
columns (grpokit's `grpokit_row` removed here) and may return text appended to the last user message.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grpokit.config.agents import ENVIRONMENT_COLUMN
from grpokit.config.schema import RunConfig
from grpokit.errors import ConfigError
from grpokit.rewards.common import ROW_COLUMN
from grpokit.rewards.policy import is_async_reward
from grpokit.rewards.user import import_user_object

ENVIRONMENT_HOOKS = ("reset", "get_reward")  # an environment's methods that are not tools
# What TRL 1.16's GRPOTrainer warns about as experimental, by the grpokit key that uses it; the warning's text.
TRL_EXPERIMENTAL = {"environment:": "environment_factory", "rollout_func:": "rollout_func"}
TRL_EXPERIMENTAL_WARNING = r"You are using '(environment_factory|rollout_func)', which is an experimental feature"
_SCHEMA_FIX = (
    "give the function a Google-style docstring (a description, then an `Args:` section with one line per "
    "argument) and a type hint on every argument; see docs/agents.md"
)


@dataclass(frozen=True)
class AgentSetup:
    """What a config's agent keys resolve to, ready for GRPOTrainer and for grpokit's tool loop.

    - `tools`: the standalone tools (TRL's `tools=`), in config order;
    - `environment_factory`: a no-argument factory (TRL's `environment_factory=`), or a mapping
      environment name -> factory when rows name their environment; None without `environment:`;
    - `rollout_func`: TRL's `rollout_func=`, or None;
    - `chat_template`: the text of the `chat_template:` file (`load_tokenizer` applies it), or None;
    - `environment_rewards`: the metric names TRL gives the environments' `get_reward` (their class names);
    - `reset_signatures`: each environment's `reset` signature, by its key (`environment` or `environment.<name>`).
    """

    tools: list[Callable] = field(default_factory=list)
    environment_factory: Callable[[], Any] | dict[str, Callable[[], Any]] | None = None
    rollout_func: Callable | None = None
    chat_template: str | None = None
    environment_rewards: tuple[str, ...] = ()
    reset_signatures: dict[str, inspect.Signature] = field(default_factory=dict)

    @property
    def uses_tools(self) -> bool:
        """Whether TRL's tool loop runs: standalone tools or an environment (whose methods are tools)."""
        return bool(self.tools) or self.environment_factory is not None

    def all_tools(self) -> list[Callable]:
        """Every tool a prompt may be offered: the standalone tools, then each environment's methods (one instance
        each), as TRL's `trainer.tools` (the prompt-length count and the chat template checks use these)."""
        factories = self.environment_factory.values() if isinstance(self.environment_factory, dict) else [self.environment_factory]
        tools = list(self.tools)
        for factory in factories:
            if factory is not None:
                tools += environment_tools(factory())
        return tools

    def rollout_preparer(self, rows: list[Mapping[str, Any]]) -> Callable[[int, int], tuple[list[dict], list[Callable]]] | None:
        """For `model.tool_loop.generate_with_tools(prepare_rollout=...)`: each rollout a fresh environment, reset with
        its row (TRL: the `environment` column is left out with several environments) and its observation added
        to the last message, its tools the standalone ones plus the environment's methods. None without one."""
        if self.environment_factory is None:
            return None
        several = isinstance(self.environment_factory, dict)

        def prepare(index: int, sample: int) -> tuple[list[dict], list[Callable]]:
            row = rows[index]
            environment = self.factory_for(row)()
            observation = environment.reset(**{k: v for k, v in row.items() if not (several and k == ENVIRONMENT_COLUMN)})
            prompt = list(row["prompt"])
            if isinstance(observation, str):
                prompt[-1] = {**prompt[-1], "content": prompt[-1]["content"] + observation}
            return prompt, self.tools + environment_tools(environment)

        return prepare

    def check_reset_columns(self, columns: list[str], *, source: str, data: str) -> None:
        """Check that each environment's `reset(**row)` accepts the dataset's columns (`data` names the dataset).

        TRL calls `reset` with every column of the row (grpokit's row index and, with several environments,
        the `environment` column left out), so `reset` must take `**kwargs` or one parameter per column, and
        every parameter without a default needs a column.

        Raises:
            ConfigError: naming the environment key and the column or parameter that does not match.
        """
        passed = [c for c in columns if c != ROW_COLUMN and not (isinstance(self.environment_factory, dict) and c == ENVIRONMENT_COLUMN)]
        for key, signature in self.reset_signatures.items():
            error = _reset_columns_error(signature, passed)
            if error is not None:
                what, fix = error
                raise ConfigError(f"the environment's reset{signature} {what}", where=f"{source}, key {key}; {data}", fix=fix)

    def reset_reward(self, row: Mapping[str, Any], *, source: str) -> dict[str, float]:
        """`{class name: get_reward()}` of the row's environment right after `reset(**row)`: the environment reward
        of a rollout that calls no tool (what `validate` shows beside the rewards); {} without `get_reward`.

        Raises:
            ConfigError: `reset` or `get_reward` raised, naming the dataset row.
        """
        factory = self.factory_for(row)
        if factory is None:
            return {}
        environment = factory()
        name = type(environment).__name__
        try:
            environment.reset(**{k: v for k, v in row.items() if not (isinstance(self.environment_factory, dict) and k == ENVIRONMENT_COLUMN)})
            return {name: float(environment.get_reward())} if name in self.environment_rewards else {}
        except Exception as error:  # the user's environment: any failure is reported with its row
            raise ConfigError(
                f"environment {name} failed on a dataset row: {type(error).__name__}: {error}",
                where=f"{source}, row {row.get(ROW_COLUMN, '?')}",
                fix="fix reset() / get_reward() for this row (they receive the row's columns as keyword arguments)",
            ) from error

    def experimental_notice(self) -> str | None:
        """One line for the run's log when the config uses what TRL 1.16 marks experimental (it warns at every
        GRPOTrainer construction; grpokit says it once, in its own words, and silences TRL's text)."""
        keys = [key for key, value in (("environment:", self.environment_factory), ("rollout_func:", self.rollout_func)) if value is not None]
        if not keys:
            return None
        return (
            f"{' and '.join(keys)} use TRL's {' and '.join(TRL_EXPERIMENTAL[k] for k in keys)}, which TRL "
            "marks experimental: its behaviour may change in a later TRL release (see docs/agents.md, Limits)"
        )

    def trainer_kwargs(self) -> dict[str, Any]:
        """The keyword arguments for `GRPOTrainer(...)`: only those the config sets."""
        kwargs: dict[str, Any] = {}
        if self.tools:
            kwargs["tools"] = list(self.tools)
        if self.environment_factory is not None:
            kwargs["environment_factory"] = self.environment_factory
        if self.rollout_func is not None:
            kwargs["rollout_func"] = self.rollout_func
        return kwargs

    def factory_for(self, row: Mapping[str, Any]) -> Callable[[], Any] | None:
        """The environment factory a row uses (its `environment` column when several are configured)."""
        if not isinstance(self.environment_factory, dict):
            return self.environment_factory
        name = row.get(ENVIRONMENT_COLUMN)
        if name not in self.environment_factory:
            raise ConfigError(
                f"a row names environment {name!r}, which is not configured",
                where=f"row {row.get(ROW_COLUMN, '?')}, column {ENVIRONMENT_COLUMN}",
                fix=f"use one of {sorted(self.environment_factory)} in the {ENVIRONMENT_COLUMN} column, or add it to environment:",
            )
        return self.environment_factory[name]


def resolve_agent(config: RunConfig) -> AgentSetup:
    """Import and check the config's `tools:`, `environment:` and `rollout_func:`; read `chat_template:`.

    Raises:
        ConfigError: a path names nothing importable or callable; a tool's or an environment method's
            JSON schema cannot be built (naming the tool and the argument); an environment cannot be built
            with its `environment_args` or has no `reset`; no reward source (no `rewards:` and no
            `get_reward`); a rollout function that does not take `(prompts, trainer)`.
    """
    options, source, base_dir = config.options, config.source, config.base_dir
    tools = [_tool(path, index, base_dir, source) for index, path in enumerate(options.tools or [])]
    _no_two_tools_named_alike(tools, source)
    factory, reward_names, resets = None, (), {}
    if isinstance(options.environment, dict):
        args = options.environment_args or {}
        built = {name: _environment(path, args.get(name, {}), base_dir, source, f"environment.{name}") for name, path in options.environment.items()}
        factory = {name: made for name, (made, _, _) in built.items()}
        reward_names = tuple(dict.fromkeys(name for _, name, _ in built.values() if name))
        resets = {f"environment.{name}": reset for name, (_, _, reset) in built.items()}
    elif options.environment is not None:
        factory, reward_name, reset = _environment(options.environment, options.environment_args or {}, base_dir, source, "environment")
        reward_names, resets = ((reward_name,) if reward_name else ()), {"environment": reset}
    if factory is not None and not config.reward_specs and not reward_names:
        raise ConfigError(
            "no reward: the config lists no rewards: and the environment defines no get_reward()",
            where=f"{source}, key environment",
            fix="add a get_reward(self) -> float method to the environment, or list rewards under rewards:",
        )
    rollout = _rollout_func(options.rollout_func, base_dir, source) if options.rollout_func else None
    template = Path(options.chat_template).read_text(encoding="utf-8") if options.chat_template else None
    return AgentSetup(tools, factory, rollout, template, reward_names, resets)


def environment_tools(environment: Any) -> list[Callable]:
    """An environment instance's tools as TRL lists them: its class's public functions but reset and get_reward, bound."""
    return [
        getattr(environment, name)
        for name, _ in inspect.getmembers(type(environment), predicate=inspect.isfunction)
        if name not in ENVIRONMENT_HOOKS and not name.startswith("_")
    ]


def tool_schema_error(tool: Callable, label: str, where: str) -> ConfigError | None:
    """The `ConfigError` for a tool whose JSON schema transformers cannot build, or None when it builds."""
    from transformers.utils import get_json_schema

    try:
        get_json_schema(tool)
    except Exception as error:  # noqa: BLE001 -- DocstringParsingException, TypeHintParsingException, ValueError
        return ConfigError(f"{label} cannot be offered to the model: {error}", where=where, fix=_SCHEMA_FIX)
    return None


def _imported(path: str, base_dir: Path, kind: str, where: str) -> Any:
    """`import_user_object`, its error's `where` starting with the config key (the module's own detail after it)."""
    try:
        return import_user_object(path, base_dir=base_dir, kind=kind, error=ConfigError)
    except ConfigError as error:
        raise ConfigError(error.what, where=where + (f"; {error.where}" if error.where else ""), fix=error.fix) from error.__cause__


def _tool(path: str, index: int, base_dir: Path, source: str) -> Callable:
    where = f"{source}, key tools[{index}]"
    tool = _imported(path, base_dir, "tool", where)
    if not inspect.isfunction(tool) and not inspect.ismethod(tool):
        raise ConfigError(
            f'tool "{path}" is a {type(tool).__name__}, not a function',
            where=where,
            fix="name a plain or async function (`def` / `async def`): the model calls it by its __name__",
        )
    error = tool_schema_error(tool, f'tool "{path}" ({tool.__name__})', where)
    if error is not None:
        raise error
    return tool


def _no_two_tools_named_alike(tools: list[Callable], source: str) -> None:
    names = [tool.__name__ for tool in tools]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise ConfigError(
            f"tools {twice} are listed twice (the model calls a tool by its function name)",
            where=f"{source}, key tools",
            fix="list each tool once, or rename one of the functions",
        )


def _environment(
    path: str, args: dict[str, Any], base_dir: Path, source: str, key: str
) -> tuple[Callable[[], Any], str | None, inspect.Signature]:
    """(a no-argument factory that strips grpokit's row column from reset's arguments, get_reward's metric name,
    reset's signature)."""
    where = f"{source}, key {key}"
    target = _imported(path, base_dir, "environment", where)
    try:
        instance = target(**args)
    except Exception as error:
        raise ConfigError(
            f'environment "{path}" could not be built with environment_args {args}: {type(error).__name__}: {error}',
            where=where,
            fix="make environment_args match the constructor's parameters",
        ) from error
    methods = dict(inspect.getmembers(type(instance), predicate=inspect.isfunction))  # as TRL lists them
    if "reset" not in methods:
        raise ConfigError(
            f'environment "{path}" ({type(instance).__name__}) has no reset method',
            where=where,
            fix="define reset(self, **kwargs): it receives the row's columns and may return text added to the prompt",
        )
    for method in environment_tools(instance):
        error = tool_schema_error(method, f"environment method {type(instance).__name__}.{method.__name__}", where)
        if error is not None:
            raise error
    factory = functools.partial(_built_environment, target, dict(args))
    return factory, (type(instance).__name__ if "get_reward" in methods else None), inspect.signature(instance.reset)


def _reset_columns_error(signature: inspect.Signature, columns: list[str]) -> tuple[str, str] | None:
    """(what, fix) when `reset(**row)` cannot be called with these columns, else None."""
    parameters = signature.parameters.values()
    by_keyword = {p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    required = [p.name for p in parameters if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY, p.POSITIONAL_ONLY)]
    missing = [name for name in required if name not in columns]
    if missing:
        return (
            f"needs {missing}, which the dataset has no column for (its columns: {columns})",
            f"add the column(s) {missing} to the dataset, or give those parameters of reset a default",
        )
    if any(p.kind == p.VAR_KEYWORD for p in parameters):
        return None
    extra = [column for column in columns if column not in by_keyword]
    if extra:
        return (
            f"does not take the dataset column(s) {extra}: TRL calls reset(**row) with every column of the row",
            "add **kwargs to reset (def reset(self, **row)), or a parameter for each of those columns",
        )
    return None


def _built_environment(target: Callable[..., Any], args: dict[str, Any]) -> Any:
    """One environment instance, its `reset` seeing the row's own columns only (not `grpokit_row`)."""
    instance = target(**args)
    reset = instance.reset

    def reset_with_row_columns(**row: Any) -> Any:
        row.pop(ROW_COLUMN, None)
        return reset(**row)

    instance.reset = reset_with_row_columns  # an instance attribute: TRL still lists the class's methods
    return instance


def _rollout_func(path: str, base_dir: Path, source: str) -> Callable:
    function = _imported(path, base_dir, "rollout_func", f"{source}, key rollout_func")
    try:
        inspect.signature(function).bind(["prompt"], object())
    except (TypeError, ValueError) as error:
        raise ConfigError(
            f'rollout_func "{path}" cannot be called as fn(prompts, trainer): {error}',
            where=f"{source}, key rollout_func",
            fix="define it as def rollout(prompts, trainer) -> dict with prompt_ids, completion_ids and logprobs",
        ) from error
    if is_async_reward(function):
        raise ConfigError(
            f'rollout_func "{path}" is async; TRL calls it synchronously',
            where=f"{source}, key rollout_func",
            fix="make it a plain def (run your own event loop inside it if needed)",
        )
    return function
