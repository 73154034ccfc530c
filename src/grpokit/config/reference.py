"""`grpokit keys`: every config key with its type, default and meaning, read from the schemas themselves.

The generated part of docs/config.md comes from `config_reference_markdown`; a test keeps the two in sync.
"""

from __future__ import annotations

import types
import typing

from pydantic import BaseModel

from grpokit.config.schema import GrpokitOptions
from grpokit.config.trl_fields import GRPOKIT_TRL_DEFAULTS, trl_defaults, trl_field_types, type_name


def _describe_default(info) -> str:
    if info.is_required():
        return "required"
    if info.default_factory is not None:
        value = info.default_factory()
        return "see below" if isinstance(value, BaseModel) else repr(value)
    return repr(info.default)


def _section(annotation) -> type[BaseModel] | None:
    """The model of a section (`X` or `X | None`); lists of models (rewards) are documented on their own."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    members = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(members) == 1:
        return _section(members[0])
    return None


def options_reference() -> list[tuple[str, str, str, str]]:
    """(key, type, default, description) for every grpokit option, nested sections as dotted keys."""
    rows = []

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, info in model.model_fields.items():
            annotation = info.annotation
            rows.append((prefix + name, type_name(annotation), _describe_default(info), info.description or ""))
            section = _section(annotation)
            if section is not None:
                walk(section, f"{prefix}{name}.")

    walk(GrpokitOptions, "")
    return rows


def trl_reference() -> list[tuple[str, str, str]]:
    """(key, type, default) for every TRL GRPOConfig field, with grpokit's changed defaults."""
    defaults = {**trl_defaults(), **GRPOKIT_TRL_DEFAULTS}
    return [(name, type_name(kind), repr(defaults.get(name, "required"))) for name, kind in sorted(trl_field_types().items())]


def config_reference_markdown() -> str:
    """The generated part of docs/config.md: grpokit's keys and the TRL defaults grpokit changes."""
    lines = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for key, kind, default, description in options_reference():
        lines.append(f"| `{key}` | `{kind}` | `{default}` | {description} |".replace("`see below`", "see below"))
    lines += ["", "TRL defaults that grpokit changes (set the key to override):", ""]
    lines += ["| key | grpokit default | TRL default |", "|---|---|---|"]
    defaults = trl_defaults()
    for key, value in GRPOKIT_TRL_DEFAULTS.items():
        lines.append(f"| `{key}` | `{value!r}` | `{defaults.get(key)!r}` |")
    return "\n".join(lines) + "\n"
