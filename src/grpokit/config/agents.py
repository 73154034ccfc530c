"""The agent keys of the config: tools, environments, a rollout function and the chat template (docs/agents.md).

    tools: [calculator.py:multiply, my_pkg.search:web_search]   # functions the policy may call
    environment: envs.py:Wordle                                 # reset(**row); public methods are tools
    environment_args: {max_guesses: 6}
    environment: {wordle: envs.py:Wordle, maze: envs.py:Maze}   # several: each row names its own in `environment`
    environment_args: {wordle: {max_guesses: 6}}
    rollout_func: rollouts.py:my_rollout                        # TRL's rollout_func contract
    chat_template: qwen2_5                                      # a template TRL ships, or a .jinja file

This module is pydantic only (no TRL, no user code), so a bad config is reported before the heavy
imports. The callables are imported and checked by `grpokit.rewards.agent.resolve_agent`; the chat
template file is located here, at load (`resolve_chat_template`), and applied by `load_tokenizer`.
"""

from __future__ import annotations

import difflib
import importlib.util
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, model_validator

from grpokit.errors import ConfigError

ENVIRONMENT_COLUMN = "environment"  # the column naming each row's environment when several are configured
_TEMPLATE_SUFFIXES = (".jinja", ".jinja2", ".j2")


class AgentOptions(BaseModel):
    """The agent keys, mixed into `GrpokitOptions` (top-level keys of the config file)."""

    tools: list[str] | None = Field(
        None,
        description="Functions the policy may call during generation (TRL's tools=): each 'package.module:function' "
        "or 'path/to/file.py:function' (relative to the config file); sync or async, with type hints and a "
        "Google-style docstring (its JSON schema is what the model sees).",
    )
    environment: str | dict[str, str] | None = Field(
        None,
        description="A class or factory (dotted or file path) whose instances have reset(**row); its public methods "
        "become tools and an optional get_reward() a reward (TRL's environment_factory=). A mapping name -> path: "
        "several environments, each row naming its own in an `environment` column.",
    )
    environment_args: dict[str, Any] | None = Field(
        None,
        description="Keyword arguments for the environment's constructor; with several environments, a mapping "
        "environment name -> its arguments.",
    )
    rollout_func: str | None = Field(
        None,
        description="A custom rollout function, fn(prompts, trainer) -> {prompt_ids, completion_ids, logprobs, ...} "
        "(TRL's rollout_func=), by dotted or file path.",
    )
    chat_template: str | None = Field(
        None,
        description="Replace the tokenizer's chat template: a template file (relative to the config file), or the "
        "name of a template TRL ships (e.g. qwen2_5, llama3_2, qwen3) for models whose own cannot call tools.",
    )

    @model_validator(mode="after")
    def _environment_args_fit_the_environments(self) -> AgentOptions:
        if self.environment_args is not None and self.environment is None:
            raise ValueError("environment_args is set but environment is not: set environment, or remove environment_args")
        if isinstance(self.environment, dict):
            if not self.environment:
                raise ValueError("environment: is an empty mapping; name at least one environment")
            unknown = sorted(set(self.environment_args or {}) - set(self.environment))
            if unknown:
                raise ValueError(
                    f"environment_args names {unknown}, which are not environments; with several environments, "
                    f"environment_args maps each environment name ({sorted(self.environment)}) to its arguments"
                )
            bad = [name for name, args in (self.environment_args or {}).items() if not isinstance(args, dict)]
            if bad:
                raise ValueError(f"environment_args for {bad} must be mappings of keyword arguments")
        return self

    @property
    def has_agent(self) -> bool:
        """Whether the run generates with tools, environments or a custom rollout."""
        return bool(self.tools) or self.environment is not None or self.rollout_func is not None

    @property
    def uses_tools(self) -> bool:
        """Whether the policy can call tools (standalone or an environment's methods): TRL's tool loop runs."""
        return bool(self.tools) or self.environment is not None


def shipped_templates_dir() -> Path | None:
    """TRL's `chat_templates/` folder, found without importing TRL (None when TRL is not installed)."""
    spec = importlib.util.find_spec("trl")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "chat_templates"


def shipped_template_names() -> list[str]:
    """The chat templates TRL ships, by the name `chat_template:` takes (file stem)."""
    folder = shipped_templates_dir()
    return sorted(path.stem for path in folder.glob("*.jinja")) if folder is not None else []


def resolve_chat_template(value: str, base_dir: Path, source: str) -> str:
    """The absolute path of the template `chat_template:` names: a file (relative to the config) or TRL's by name.

    Raises:
        ConfigError: no such file, and no template TRL ships by that name (the closest names listed).
    """
    looks_like_file = value.endswith(_TEMPLATE_SUFFIXES) or "/" in value or "\\" in value
    candidate = Path(value).expanduser()
    candidate = candidate if candidate.is_absolute() else base_dir / candidate
    if candidate.is_file():
        return str(candidate.resolve())
    names = shipped_template_names()
    if not looks_like_file and value in names:
        return str((shipped_templates_dir() / f"{value}.jinja").resolve())
    close = difflib.get_close_matches(value, names, n=3)
    what = f"chat_template file {value} does not exist" if looks_like_file else f"chat_template {value!r} is not a file nor a template TRL ships"
    raise ConfigError(
        what,
        where=f"{source}, key chat_template (looked for {candidate})",
        fix=f"did you mean {', '.join(close)}?"
        if close
        else f"give a template file, or one of TRL's: {', '.join(names) or '(TRL not installed)'}",
    )


def check_agent_keys(
    options: AgentOptions, trl_args: Mapping[str, Any], *, has_dataset: bool, dynamic_sampling: bool, source: str
) -> None:
    """Rules between the agent keys and other keys, at load (no user code imported).

    Raises:
        ConfigError: dynamic sampling with tools, environments or a rollout function; no training data
            with several environments; no data and no positive max_steps (the environment makes the
            tasks, so nothing else bounds the run).
    """
    if dynamic_sampling and options.has_agent:
        keys = [key for key in ("tools", "environment", "rollout_func") if getattr(options, key)]
        raise ConfigError(
            f"dynamic_sampling does not work with {', '.join(keys)} yet: its extra generation rounds would "
            "join tool-calling batches (tool masks, environment instances) that it does not know how to join",
            where=f"{source}, keys dynamic_sampling and {keys[0]}",
            fix="remove dynamic_sampling (or set it false) for an agent run",
        )
    if has_dataset:
        return
    if options.environment is None:
        return  # GrpokitOptions already requires data without an environment
    if isinstance(options.environment, dict):
        raise ConfigError(
            "several environments need a dataset whose `environment` column sends each row to its environment",
            where=f"{source}, key environment",
            fix="set train_dataset_path (rows with an `environment` column), or configure one environment",
        )
    if not isinstance(trl_args.get("max_steps", -1), int) or trl_args.get("max_steps", -1) <= 0:
        raise ConfigError(
            "the environment makes its own tasks (no training data), so the run has no length: max_steps is not set",
            where=f"{source}, key max_steps",
            fix="set max_steps to the number of optimizer steps to train, e.g. max_steps: 100",
        )
