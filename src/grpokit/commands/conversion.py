"""What `grpokit convert` produces: the converted config and one note per decision."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml


@dataclass
class Conversion:
    """A converted config and one note per decision, in the order they were made."""

    config: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def set(self, key: str, value: Any, why: str) -> None:
        self.config[key] = value
        self.notes.append(f"{key}: {show(value)}  ({why})")

    def note(self, text: str) -> None:
        self.notes.append(text)


def show(value: Any) -> str:
    """A value as YAML writes it inline: `true`, `[a, b]`, `{path: x}`."""
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("...").strip()
