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
