"""How numbers are shown in tables and reports: one formatter, so every screen reads the same."""

from __future__ import annotations

import math
from typing import Any


def fmt(value: Any, digits: int = 3) -> str:
    """A score as text: `0.123`, or `-` when there is no finite number.

    >>> fmt(0.5), fmt(None), fmt(float("nan")), fmt(True)
    ('0.500', '-', '-', '-')
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return "-"
    return f"{value:.{digits}f}"


def duration(seconds: float) -> str:
    """A length of time as a reader says it: `45 s`, `12 min`, `3.5 h`.

    >>> duration(44.6), duration(720), duration(12600)
    ('45 s', '12 min', '3.5 h')
    """
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
