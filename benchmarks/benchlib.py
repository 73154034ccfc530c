"""What every benchmark records next to its figures, and the paired statistics they report.

- `machine()`: CPU cores, architecture, the Python and library versions, the git commit measured;
- `invocation(script, argv, args)`: the arguments as parsed and the one command that reproduces them;
- `paired(ratios)`: per-round ratios (grpokit's figure over the baseline's, measured in the same
  round), their median and min-max. A ratio per alternated round cancels what the machine did during
  that round; medians of each side taken separately do not.
- `censored_ratio` / `paired_bounds`: the same for "time to a target" figures, where a run that never
  reached the target gives only a bound (its whole run is a lower bound on its time to the target).

Pure Python: the README generator (`readme_figures.py`) and the tests import it without torch.
"""

from __future__ import annotations

import math
import os
import platform
import shlex
import statistics
import subprocess
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIBRARIES = ("torch", "transformers", "trl", "accelerate", "peft", "datasets", "grpokit")


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages, rounded to 0.1."""
    return [round(value, 1) for value in os.getloadavg()]


def machine() -> dict:
    """The machine and software a benchmark ran on."""
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "cpu_cores": os.cpu_count(),
        "architecture": platform.machine(),
        "python": platform.python_version(),
        "versions": versions,
        "git_commit": _git_commit(),
    }


def _git_commit() -> str | None:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,
                               text=True, check=True).stdout  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit.strip() + ("+uncommitted changes" if dirty.strip() else "")


def invocation(script: str, argv: list[str], arguments: dict) -> dict:
    """The arguments a run was given (as parsed, defaults included) and the command that repeats it."""
    return {
        "command": " ".join([".venv/bin/python", f"benchmarks/{script}", *map(shlex.quote, argv)]),
        "arguments": {key: str(value) if isinstance(value, Path) else value for key, value in arguments.items()},
    }


def paired(ratios: list[float], digits: int = 4) -> dict:
    """`{"per_round": [...], "median": m, "min": a, "max": b}` of per-round ratios (or differences)."""
    values = [round(value, digits) for value in ratios]
    if not values:
        return {"per_round": [], "median": None, "min": None, "max": None}
    return {"per_round": values, "median": round(statistics.median(ratios), digits), "min": min(values), "max": max(values)}


def spread_text(stat: dict, form: str = "{:.2f}", suffix: str = "x") -> str:
    """'1.09x (0.95 to 1.25)' for a `paired()` result; '-' when it has no value."""
    if stat.get("median") is None:
        return "-"
    median = form.format(stat["median"]) + suffix
    if len(stat["per_round"]) < 2:
        return median
    return f"{median} ({form.format(stat['min'])} to {form.format(stat['max'])})"


def conditions_text(record: dict) -> str:
    """One line: the machine, the versions and the load average before and after, from a results file."""
    machine_ = record["machine"]
    parts = [f"{machine_['cpu_cores']} CPU cores ({machine_['architecture']})"]
    if machine_.get("python"):
        parts.append(f"Python {machine_['python']}")
    parts += [f"{name} {version}" for name, version in machine_["versions"].items() if version and name != "grpokit"]
    before, after = record["load_average_before"][0], record["load_average_after"][0]
    return ", ".join(parts) + f"; load average (1 min) {before} before, {after} after"


def censored_ratio(ours: float | None, ours_whole_run: float, theirs: float | None, theirs_whole_run: float) -> list:
    """Bounds `[low, high]` of ours / theirs in one paired round; `None` for a side that never reached the target.

    A side that never reached it took longer than its whole run, so its whole run bounds the ratio:
    ours missing gives `[ours_whole_run / theirs, None]` (None: no upper bound), theirs missing gives
    `[0, ours / theirs_whole_run]`, both missing `[0, None]`.

    Example:
        >>> censored_ratio(10, 50, 20, 40), censored_ratio(None, 50, 20, 40), censored_ratio(10, 50, None, 40)
        ([0.5, 0.5], [2.5, None], [0, 0.25])
    """
    if ours is not None and theirs is not None:
        return [ours / theirs, ours / theirs]
    if theirs is not None:
        return [ours_whole_run / theirs, None]
    if ours is not None:
        return [0, ours / theirs_whole_run]
    return [0, None]


def paired_bounds(bounds: list[list], digits: int = 3) -> dict:
    """Median and min-max of per-round `censored_ratio` bounds: the median lies within `[median of lows,
    median of highs]` (None: unbounded), which is one number when every round reached the target."""
    def rounded(value):
        return None if value is None else round(value, digits)

    lows = [low for low, _ in bounds]
    highs = [math.inf if high is None else high for _, high in bounds]
    if not bounds:
        return {"per_round": [], "median": None, "min": None, "max": None}
    high_median, high_max = statistics.median(highs), max(highs)
    return {
        "per_round": [[rounded(low), rounded(high)] for low, high in bounds],
        "median": [rounded(statistics.median(lows)), None if math.isinf(high_median) else rounded(high_median)],
        "min": rounded(min(lows)),
        "max": None if math.isinf(high_max) else rounded(high_max),
    }


def bounds_text(low: float | None, high: float | None, form: str = "{:.2f}") -> str:
    """'0.46x', '> 7.8x' (no upper bound), '< 0.3x' (no lower bound), '0.5x to 0.9x', '-' (neither)."""
    if low is None:
        return "-"
    if high is not None and high == low:
        return form.format(low) + "x"
    if high is None:
        return f"> {form.format(low)}x" if low > 0 else "-"
    if low == 0:
        return f"< {form.format(high)}x"
    return f"{form.format(low)}x to {form.format(high)}x"


def bounds_spread_text(stat: dict, form: str = "{:.2f}") -> str:
    """A `paired_bounds` result as 'median (min to max)'."""
    if stat["median"] is None:
        return "-"
    median = bounds_text(*stat["median"], form=form)
    if len(stat["per_round"]) < 2 or median == "-":
        return median
    top = "no upper bound" if stat["max"] is None else form.format(stat["max"])
    return f"{median} ({form.format(stat['min'])} to {top})"
