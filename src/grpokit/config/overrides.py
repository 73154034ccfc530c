"""What grpokit does not use as the config wrote it: one list, built at load, read by every record of the run.

A value the config sets can reach the run changed (`bf16: true` on a machine without CUDA trains in
float32) or accepted and acting on nothing (`vllm_structured_outputs_regex` once vLLM is off). Either
way grpokit says so: each such value is one `Override` (the key, the value written, the value used,
why), made as data by the step that decides it (`config.fallbacks`, `config.distributed`,
`config.inert`, `config.trl_versions` for fields of an older release) and applied by
`config.loading.resolve_config`, never by those steps themselves. The resolved `RunConfig.overrides`
is then what the log says once at load, what `grpokit validate` prints, what `run_info.json` records
and what the report's config section lists.

Example:
    >>> override = Override("bf16", True, False, "needs a CUDA GPU and none was found; training in float32")
    >>> override.line()
    'bf16: True -> False (needs a CUDA GPU and none was found; training in float32)'
    >>> Override("vllm_mode", "colocate", INERT, "only vLLM reads it, and vLLM is off").line()
    "vllm_mode: 'colocate' has no effect (only vLLM reads it, and vLLM is off)"
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Target = Literal["trl", "option", "none"]


class _Inert:
    """The value an `Override` uses when the written value is kept but acts on nothing."""

    def __repr__(self) -> str:
        return "INERT"


INERT: Any = _Inert()


@dataclass(frozen=True)
class Override:
    """One value of the config that the run does not use as written.

    `key`: the config key (a dotted name inside a section or another file: `distributed: x.yaml
    mixed_precision`); `written`: the value the config gave it; `used`: what the run uses instead, or
    `INERT` when the value is kept and acts on nothing; `why`: the reason, a phrase that also says
    what to do instead when there is something to do; `target`: what `apply` changes, TRL's field
    (`trl`), grpokit's option (`option`), or nothing (`none`: a note about a value applied elsewhere).
    """

    key: str
    written: Any
    used: Any
    why: str
    target: Target = "none"

    @property
    def inert(self) -> bool:
        return self.used is INERT

    def line(self) -> str:
        """One line for the log and `grpokit validate`: `key: written -> used (why)`."""
        if self.inert:
            return f"{self.key}: {self.written!r} has no effect ({self.why})"
        return f"{self.key}: {self.written!r} -> {self.used!r} ({self.why})"

    def as_record(self) -> dict[str, Any]:
        """The entry `run_info.json` keeps: plain JSON values, `used` None when the value is inert."""
        return {
            "key": self.key,
            "written": _plain(self.written),
            "used": None if self.inert else _plain(self.used),
            "effect": "none" if self.inert else "changed",
            "why": self.why,
        }


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    return str(value)


def changed_options(overrides: list[Override]) -> dict[str, Any]:
    """The grpokit options the overrides change, as `model_copy(update=...)` takes them."""
    return {o.key: o.used for o in overrides if o.target == "option" and not o.inert}


def apply_to_trl_args(overrides: list[Override], trl_args: dict[str, Any]) -> None:
    """Set the TRL fields the overrides change in `trl_args` (the resolving config's own dict)."""
    for override in overrides:
        if override.target == "trl" and not override.inert:
            trl_args[override.key] = override.used


def lines(overrides: list[Override] | tuple[Override, ...]) -> list[str]:
    """Each override's line, in order, each once."""
    return list(dict.fromkeys(override.line() for override in overrides))
