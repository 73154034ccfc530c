"""Errors grpokit reports to the user: one clear message, never a wall of traceback.

Every error says what went wrong, where (a file, a key, a row) and how to fix it. The CLI turns a
`GrpokitError` into that message and its `exit_code`: 2 for bad input (config, data, paths, usage),
1 for a failure during a run.
"""

from __future__ import annotations


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
