"""The HTML report of a training run: curves, per-reward statistics, sample completions, config.

`write_report(output_dir)` reads what a run leaves in its output directory, finished or still
running, and writes two files next to it:

- `curves.png`: the reward per step (and each reward's mean when there are several) and, when the
  run logged `heldout_accuracy` (the demo does), the held-out accuracy per evaluation;
- `report.html`: one self-contained page (the plot embedded as base64, no external assets) with the
  summary (`summary.json`, when present), the curves, a table of statistics per reward, sample
  completions before and after training (`completions.jsonl`, when recorded) and the resolved config.

Inputs it reads, all optional except `metrics.jsonl`:

| file | written by | one line / content |
|---|---|---|
| `metrics.jsonl` | the trainer | one JSON object per step: `step`, `reward`, `rewards/<name>/mean`, ... |
| `grpokit_config.yaml` | the trainer | the resolved config, secrets masked |
| `completions.jsonl` | the demo's held-out evaluation | `{"step", "prompt", "completion", "reward"}` |
| `summary.json` | the demo | `accuracy_before`, `accuracy_after`, `train_seconds`, ... |

Example:
    >>> paths = write_report("outputs/demo")
    >>> paths.html                    # PosixPath('outputs/demo/report.html')
"""

from __future__ import annotations

import base64
import datetime
import io
import json
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from grpokit.errors import ConfigError
from grpokit.formatting import fmt
from grpokit.outputs.files import (
    CONFIG_FILE,
    HELDOUT_COMPLETIONS_FILE,
    METRICS_FILE,
    PLOT_FILE,
    REPORT_FILE,
    SAMPLE_COMPLETIONS_FILE,
    SUMMARY_FILE,
    atomic_write_bytes,
)

ACCURACY_KEY = "heldout_accuracy"
REPORT_TEMPLATE_FILE = "report_template.html"  # package data: the page layout and style
SMOOTHING_WINDOW = 10  # steps in the moving average drawn over the noisy per-step reward


@dataclass
class RunRecord:
    """What a run's output directory holds; every part but `metrics` may be empty."""

    output_dir: Path
    metrics: list[dict[str, Any]]  # training lines of metrics.jsonl, in step order
    config: dict[str, Any] | None
    completions: list[dict[str, Any]]
    summary: dict[str, Any] | None


@dataclass(frozen=True)
class RewardStats:
    """One reward's per-step mean over the run (TRL's `rewards/<name>/mean`, or the total `reward`)."""

    name: str
    steps: int
    first: float
    last: float
    mean: float
    minimum: float
    maximum: float
    last_std: float | None


@dataclass(frozen=True)
class CompletionRow:
    """One prompt's sample completion at the first and at the last recorded step (None: not recorded)."""

    prompt: str
    answer: str | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None


@dataclass(frozen=True)
class ReportPaths:
    html: Path
    plot: Path | None  # None when no step has logged a reward or an accuracy yet


# ----------------------------------------------------------------------------- reading a run


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of a JSON Lines file; a line cut short (a run still writing) is skipped."""
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def load_run(output_dir: str | Path) -> RunRecord:
    """Read a run's output directory.

    Raises:
        ConfigError: the directory does not exist or holds no `metrics.jsonl`.
    """
    output_dir = Path(output_dir)
    metrics_path = output_dir / METRICS_FILE
    if not metrics_path.is_file():
        raise ConfigError(
            f"no {METRICS_FILE} in {output_dir}",
            where=str(output_dir),
            fix="pass the output_dir of a training run (metrics.jsonl appears once the first step is logged)",
        )
    lines = read_jsonl(metrics_path)
    metrics = sorted(
        (line for line in lines if not any(key.startswith("eval_") for key in line)),
        key=lambda line: line.get("step", 0),
    )
    config_path = output_dir / CONFIG_FILE
    config = yaml.safe_load(config_path.read_text(encoding="utf-8")) if config_path.is_file() else None
    summary_path = output_dir / SUMMARY_FILE
    summary = json.loads(summary_path.read_text(encoding="utf-8")) if summary_path.is_file() else None
    return RunRecord(
        output_dir=output_dir,
        metrics=metrics,
        config=config if isinstance(config, dict) else None,
        completions=read_jsonl(output_dir / HELDOUT_COMPLETIONS_FILE) or read_jsonl(output_dir / SAMPLE_COMPLETIONS_FILE),
        summary=summary if isinstance(summary, dict) else None,
    )


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def series(metrics: list[dict[str, Any]], key: str) -> list[tuple[int, float]]:
    """(step, value) for every line that holds a finite number under `key`."""
    points = []
    for line in metrics:
        value = _number(line.get(key))
        if value is not None:
            points.append((int(line.get("step", 0)), value))
    return points


def reward_names(metrics: list[dict[str, Any]]) -> list[str]:
    """The names in `rewards/<name>/mean` keys, in the order they first appear."""
    names: list[str] = []
    for line in metrics:
        for key in line:
            if key.startswith("rewards/") and key.endswith("/mean"):
                name = key[len("rewards/") : -len("/mean")]
                if name not in names:
                    names.append(name)
    return names


def reward_statistics(metrics: list[dict[str, Any]]) -> list[RewardStats]:
    """Statistics of the total `reward` and of each `rewards/<name>/mean` over the logged steps."""
    keys = [("reward (total)", "reward", "reward_std")] + [
        (name, f"rewards/{name}/mean", f"rewards/{name}/std") for name in reward_names(metrics)
    ]
    stats = []
    for label, mean_key, std_key in keys:
        points = series(metrics, mean_key)
        if not points:
            continue
        values = [value for _, value in points]
        stds = series(metrics, std_key)
        stats.append(
            RewardStats(
                name=label,
                steps=len(values),
                first=values[0],
                last=values[-1],
                mean=math.fsum(values) / len(values),
                minimum=min(values),
                maximum=max(values),
                last_std=stds[-1][1] if stds else None,
            )
        )
    return stats


def completion_rows(completions: list[dict[str, Any]]) -> tuple[int | None, int | None, list[CompletionRow]]:
    """Pair each prompt's completion at the first recorded step with the one at the last step.

    Returns (first step, last step, rows in the order prompts first appear). With a single recorded
    step, `after` is None in every row.
    """
    steps = sorted({int(record.get("step", 0)) for record in completions})
    if not steps:
        return None, None, []
    first, last = steps[0], steps[-1]
    rows: dict[str, dict[str, Any]] = {}
    for record in completions:
        step = int(record.get("step", 0))
        if step not in (first, last):
            continue
        prompt = str(record.get("prompt", ""))
        row = rows.setdefault(prompt, {"answer": record.get("answer"), "before": None, "after": None})
        if step == first and row["before"] is None:
            row["before"] = record
        if step == last and last != first and row["after"] is None:
            row["after"] = record
    return first, (last if last != first else None), [
        CompletionRow(prompt=prompt, answer=row["answer"], before=row["before"], after=row["after"])
        for prompt, row in rows.items()
    ]


# ----------------------------------------------------------------------------- plot


def moving_average(values: list[float], window: int) -> list[float]:
    """Mean of the last `window` values at each position (fewer at the start)."""
    averages, total = [], 0.0
    for index, value in enumerate(values):
        total += value
        if index >= window:
            total -= values[index - window]
        averages.append(total / min(index + 1, window))
    return averages


def plot_curves(run: RunRecord) -> bytes | None:
    """A PNG of the reward curve and, when logged, the held-out accuracy curve; None without any reward."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no display needed

    rewards = series(run.metrics, "reward")
    accuracy = series(run.metrics, ACCURACY_KEY)
    if not rewards and not accuracy:
        return None
    panels = 2 if rewards and accuracy else 1
    figure = Figure(figsize=(6.0 * panels, 3.6), dpi=100, layout="constrained")
    axes = figure.subplots(1, panels, squeeze=False)[0]
    if rewards:
        _draw_rewards(axes[0], run.metrics, rewards)
    if accuracy:
        _draw_accuracy(axes[-1], accuracy)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _draw_rewards(ax, metrics: list[dict[str, Any]], rewards: list[tuple[int, float]]) -> None:
    steps, values = zip(*rewards)
    ax.plot(steps, values, color="tab:blue", alpha=0.3, linewidth=1, label="reward per step")
    ax.plot(steps, moving_average(list(values), SMOOTHING_WINDOW), color="tab:blue", linewidth=2,
            label=f"moving average ({SMOOTHING_WINDOW} steps)")
    names = reward_names(metrics)
    if len(names) > 1:
        for name in names:
            points = series(metrics, f"rewards/{name}/mean")
            if points:
                ax.plot(*zip(*points), linewidth=1, label=f"{name} (mean)")
    ax.set_title("reward")
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")


def _draw_accuracy(ax, accuracy: list[tuple[int, float]]) -> None:
    steps, values = zip(*accuracy)
    ax.plot(steps, values, color="tab:green", marker="o", markersize=3, linewidth=2)
    ax.set_title("held-out greedy accuracy")
    ax.set_xlabel("step")
    ax.set_ylim(0.0, 1.0)
    ax.grid(alpha=0.3)


# ----------------------------------------------------------------------------- HTML


def report_template() -> str:
    """The page's Jinja template, shipped as package data next to this module."""
    return resources.files("grpokit.outputs").joinpath(REPORT_TEMPLATE_FILE).read_text(encoding="utf-8")


CELL_TEMPLATE = (
    '{% if record is none %}<td class="muted">-</td><td></td>'
    "{% else %}<td>{% if record.completion %}<code>{{ record.completion }}</code>"
    '{% else %}<span class="muted">(empty)</span>{% endif %}</td>'
    '<td class="num {{ css }}">{{ fmt(record.reward) }}</td>{% endif %}'
)


def _summary_items(summary: dict[str, Any] | None) -> list[tuple[str, str]]:
    if not summary:
        return []
    items = []
    for key, value in summary.items():
        if isinstance(value, float):
            items.append((key, f"{value:.3f}"))
        elif isinstance(value, (dict, list)):
            continue  # curves and nested data are drawn, not listed
        else:
            items.append((key, str(value)))
    return items


def render_report(run: RunRecord, plot_png: bytes | None) -> str:
    """The report as one HTML string; every value from the run is escaped."""
    import jinja2
    from markupsafe import Markup

    environment = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    cell_template = environment.from_string(CELL_TEMPLATE)

    def cell(record: dict[str, Any] | None):
        reward = _number(record.get("reward")) if record else None
        css = "" if reward is None else ("ok" if reward > 0 else "bad")
        return Markup(cell_template.render(record=record, fmt=fmt, css=css))

    first_step, after_step, rows = completion_rows(run.completions)
    config_text = yaml.safe_dump(run.config, sort_keys=False, allow_unicode=True) if run.config else None
    return environment.from_string(report_template()).render(
        title=run.output_dir.name or str(run.output_dir),
        output_dir=str(run.output_dir),
        steps=len(run.metrics),
        last_step=run.metrics[-1].get("step") if run.metrics else None,
        generated=datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        summary=_summary_items(run.summary),
        plot=base64.b64encode(plot_png).decode("ascii") if plot_png else None,
        reward_stats=reward_statistics(run.metrics),
        fmt=fmt,
        cell=cell,
        completion_rows=rows,
        has_answers=any(row.answer is not None for row in rows),
        first_step=first_step,
        after_step=after_step,
        completions_file=HELDOUT_COMPLETIONS_FILE,
        config=config_text,
        config_file=CONFIG_FILE,
    )


def write_report(output_dir: str | Path) -> ReportPaths:
    """Write `curves.png` and `report.html` into a run's output directory (see the module docstring).

    Safe to call while the run is still training: it reads what is there. Both files are written
    whole (to a temporary name, then renamed), so a reader never sees half a report.

    Raises:
        ConfigError: `output_dir` holds no `metrics.jsonl`.
    """
    run = load_run(output_dir)
    plot_png = plot_curves(run)
    plot_path = None
    if plot_png is not None:
        plot_path = atomic_write_bytes(run.output_dir / PLOT_FILE, plot_png)
    html_path = atomic_write_bytes(run.output_dir / REPORT_FILE, render_report(run, plot_png).encode("utf-8"))
    return ReportPaths(html=html_path, plot=plot_path)
