"""Errors grpokit reports to the user: one clear message, never a wall of traceback.

Every error says what went wrong, where (a file, a key, a row) and how to fix it. The CLI turns a
`GrpokitError` into that message and its `exit_code`: 2 for bad input (config, data, paths, usage),
1 for a failure during a run, 3 when a health check stopped the run (`HealthCheckStopped`, after
saving a checkpoint), 4 when the hang watchdog stopped it (`RunHung`). 130 / 143: stopped by Ctrl-C /
SIGTERM after saving a checkpoint.
"""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any

from pydantic import BaseModel, ValidationError


class GrpokitError(Exception):
    """A problem the user can act on. `exit_code` 2: bad input."""

    exit_code = 2

    def __init__(self, what: str, *, where: str | None = None, fix: str | None = None) -> None:
        self.what = what
        self.where = where
        self.fix = fix
        super().__init__(self.message)

    @property
    def message(self) -> str:
        lines = [self.what]
        if self.where:
            lines.append(f"  where: {self.where}")
        if self.fix:
            lines.append(f"  fix:   {self.fix}")
        return "\n".join(lines)


class ConfigError(GrpokitError):
    """The YAML config, a `--set` override or a combination of options is invalid."""


class DataError(GrpokitError):
    """A dataset file is missing, empty, unreadable or lacks a needed column."""


class RewardConfigError(GrpokitError):
    """A reward is unknown, badly parameterised or cannot be imported."""


class RunError(GrpokitError):
    """A failure during a run (a reward raised, training diverged). `exit_code` 1."""

    exit_code = 1


class HealthCheckStopped(RunError):
    """A health check with `action: stop` tripped; a checkpoint was saved first. `exit_code` 3."""

    exit_code = 3


class RunHung(RunError):
    """The hang watchdog saw no step complete in time; every rank's stacks were dumped. `exit_code` 4."""

    exit_code = 4


# ----------------------------------------------------------------------------- config keys


def closest_key(key: str, candidates: set[str] | list[str]) -> str | None:
    """The valid key most like `key`, or None when none is close."""
    matches = difflib.get_close_matches(key, sorted(candidates), n=1, cutoff=0.6)
    return matches[0] if matches else None


def unknown_key_error(key: str, candidates: set[str] | list[str], source: str, prefix: str = "") -> ConfigError:
    """The one message for a key no schema knows, in any section: the key, the file and the closest valid key."""
    suggestion = closest_key(key, candidates)
    fix = f"did you mean '{prefix}{suggestion}'?" if suggestion else "remove it; `grpokit keys --trl` lists every valid key"
    return ConfigError(f"unknown config key '{prefix}{key}'", where=source, fix=fix)


def section_model(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model a field's annotation holds (`X`, `X | None`, `list[X]`), or None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType, list):
        for argument in typing.get_args(annotation):
            model = section_model(argument)
            if model is not None:
                return model
    return None


def config_error_from_validation(
    error: ValidationError, source: str, *, model: type[BaseModel], prefix: str = ""
) -> ConfigError:
    """A pydantic error on `model` as one `ConfigError` naming the dotted key; `prefix` names the section."""
    first = error.errors()[0]
    location = prefix + ".".join(str(part) for part in first["loc"])
    if first["type"] == "extra_forbidden":
        *parents, key = [str(part) for part in first["loc"]]
        section: type[BaseModel] | None = model
        for parent in parents:
            if section is None or parent.isdigit():
                continue  # a list index (rewards[2]) stays in the same section
            field_info = section.model_fields.get(parent)
            section = section_model(field_info.annotation) if field_info is not None else None
        candidates = set(section.model_fields) if section is not None else set()
        return unknown_key_error(key, candidates, source, prefix + "".join(f"{parent}." for parent in parents))
    if not location:  # a rule over several keys (a model validator): its message names them
        message = first["msg"].removeprefix("Value error, ")
        return ConfigError(message, where=source, fix="change the keys named above")
    if first["type"] == "missing":
        return ConfigError(f"required config key '{location}' is missing", where=source, fix=f"add '{location}: ...' to the config")
    return ConfigError(
        f"'{location}' is invalid: {first['msg']} (got {first.get('input')!r})",
        where=source,
        fix=f"change '{location}'",
    )
