"""The report's figures, drawn with matplotlib's object API (no pyplot: no global state, no display).

- `plot_curves(run)` -> `curves.png`: the reward per step with its moving average (and each reward's
  mean when there are several) and, when logged, the held-out accuracy per evaluation;
- `plot_panels(runs, panels)` -> `dynamics.png` (and the compare view's figure): one small panel per
  quantity the run logged, from `metrics.jsonl`: each reward, completion length and the truncated
  share, the zero-spread share, tool calls per completion and the tool failure share, KL, entropy, clip ratio, learning rate, grad norm, loss, step time,
  tokens/s, and `dynamic_sampling/*` when logged. Health events are vertical lines on the panel of
  the metric their check reads (orange: warned, red: tripped); the thresholds of the health checks are
  dashed lines. With several runs (the compare view), each panel overlays the runs' main line.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Any

from grpokit.outputs.health_events import TRIPPED, WARNED, HealthEvent
from grpokit.outputs.run_record import RunRecord, keys_matching, reward_names, series, tokens_per_second
from grpokit.outputs.tool_metrics import CALLS_PER_COMPLETION, EVAL_PREFIX, FAILURE_SHARE

ACCURACY_KEY = "heldout_accuracy"
SMOOTHING_WINDOW = 10  # steps in the moving average drawn over noisy per-step values
TOKENS_PER_SECOND = "tokens_per_second"  # derived from num_tokens and step_time when metrics.jsonl lacks it
DYNAMIC_SAMPLING_PREFIX = "dynamic_sampling/"
EVENT_COLORS = {WARNED: "tab:orange", TRIPPED: "tab:red"}
COLUMNS = 3


@dataclass(frozen=True)
class Panel:
    """One small plot: its lines (the first is the main one, overlaid in the compare view) and decorations."""

    title: str
    lines: tuple[tuple[str, str], ...]  # (metrics key, label)
    range_keys: tuple[str, str] | None = None  # shaded min .. max around the main line
    references: tuple[tuple[str, float], ...] = ()  # dashed horizontal lines: (label, value)
    checks: tuple[str, ...] = ()  # health checks whose events are marked here
    unit_range: bool = False  # a share: y from 0 to 1
    smooth: bool = True  # draw a moving average over a long, noisy main line


PANEL_HEIGHT_IN = 2.7  # inches per row of the dynamics grid
# Grid, tick label size and title place given as rcParams while a figure is built and drawn: its ticks are
# then made with them, where `ax.grid` / `ax.tick_params` afterwards restyle every tick, and a title at a
# fixed height skips the search for what lies above each panel (nothing does). About a fifth of a
# report's drawing time, at the end of every run; the figures look the same.
STYLE = {"axes.grid": True, "grid.alpha": 0.3, "axes.titley": 1.0}
PANEL_STYLE = {**STYLE, "xtick.labelsize": "small", "ytick.labelsize": "small"}


def points(metrics: list[dict[str, Any]], key: str) -> list[tuple[int, float]]:
    found = series(metrics, key)
    return found if found or key != TOKENS_PER_SECOND else tokens_per_second(metrics)


def moving_average(values: list[float], window: int) -> list[float]:
    """Mean of the last `window` values at each position (fewer at the start)."""
    averages, total = [], 0.0
    for index, value in enumerate(values):
        total += value
        if index >= window:
            total -= values[index - window]
        averages.append(total / min(index + 1, window))
    return averages


def _health_setting(config: dict[str, Any] | None, check: str, key: str) -> float | None:
    section = ((config or {}).get("health") or {}).get(check) or {}
    value = section.get(key) if isinstance(section, dict) and section.get("action") != "off" else None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def dynamics_panels(metric_sets: list[list[dict[str, Any]]], config: dict[str, Any] | None = None) -> list[Panel]:
    """The panels worth drawing: those whose main line has a point in at least one of the runs."""
    names: list[str] = []
    for metrics in metric_sets:
        names += [name for name in reward_names(metrics) if name not in names]
    total_title = f"reward (total: {names[0]})" if len(names) == 1 else "reward (total, weighted)"
    limit = (config or {}).get("max_completion_length")
    candidates = [
        Panel(total_title, (("reward", "train"), ("eval_reward", "eval")), checks=("reward_hacking",)),
        *(Panel(f"reward: {name}", ((f"rewards/{name}/mean", "mean"),)) for name in names if len(names) > 1),
        Panel("completion length (tokens)", (("completions/mean_length", "mean"),),
              range_keys=("completions/min_length", "completions/max_length"),
              references=(("max_completion_length", float(limit)),) if isinstance(limit, (int, float)) else (), checks=("length",)),
        _share_panel("truncated share (cut at the limit)", (("completions/clipped_ratio", "truncated"),), config, "truncation"),
        _share_panel("zero-spread share (groups)", (("frac_reward_zero_std", "total"),
                     *((f"rewards/{name}/frac_zero_std", name) for name in names if len(names) > 1)), config, "zero_spread"),
        Panel("tool calls per completion", ((CALLS_PER_COMPLETION, "train"), (EVAL_PREFIX + CALLS_PER_COMPLETION, "eval")),
              references=_reference(config, "tool_calls", "stopped_below"), checks=("tool_calls",)),
        _share_panel("tool failure share (of calls)", ((FAILURE_SHARE, "train"), (EVAL_PREFIX + FAILURE_SHARE, "eval")),
                     config, "tool_failures"),
        Panel("KL to the reference", (("kl", "kl"),), references=_reference(config, "kl"), checks=("kl",)),
        Panel("entropy (nats / token)", (("entropy", "entropy"),), checks=("entropy",)),
        Panel("clip ratio", (("clip_ratio/region_mean", "region"), ("clip_ratio/low_mean", "low"), ("clip_ratio/high_mean", "high"))),
        Panel("learning rate", (("learning_rate", "learning rate"),), smooth=False),
        Panel("grad norm", (("grad_norm", "grad norm"),), checks=("nonfinite",)),
        Panel("loss", (("loss", "loss"),), checks=("nonfinite",)),
        Panel("step time (s)", (("step_time", "seconds / step"),), checks=("hang",)),
        Panel("tokens / s", ((TOKENS_PER_SECOND, "tokens / s"),)),
    ]
    dynamic = []
    for metrics in metric_sets:
        dynamic += [name for name in keys_matching(metrics, DYNAMIC_SAMPLING_PREFIX) if name not in dynamic]
    candidates += [Panel(f"dynamic sampling: {name.replace('_', ' ')}", ((DYNAMIC_SAMPLING_PREFIX + name, name),)) for name in dynamic]
    return [panel for panel in candidates if any(points(metrics, panel.lines[0][0]) for metrics in metric_sets)]


def _reference(config: dict[str, Any] | None, check: str, key: str = "threshold") -> tuple[tuple[str, float], ...]:
    threshold = _health_setting(config, check, key)
    return ((f"health.{check}.{key}", threshold),) if threshold is not None else ()


def _share_panel(title: str, lines, config, check: str) -> Panel:
    return Panel(title, tuple(lines), references=_reference(config, check), checks=(check,), unit_range=True)


def plot_panels(
    runs: list[tuple[str, list[dict[str, Any]], list[HealthEvent]]], panels: list[Panel]
) -> bytes | None:
    """A PNG grid of `panels` for one run (every line) or several (each run's main line, overlaid); None without panels."""
    from matplotlib import rc_context

    if not panels:
        return None
    with rc_context(PANEL_STYLE):
        return _panels_png(runs, panels)


def _panels_png(runs, panels: list[Panel]) -> bytes:
    from matplotlib.figure import Figure

    rows = math.ceil(len(panels) / COLUMNS)
    height = PANEL_HEIGHT_IN * rows
    figure = Figure(figsize=(4.2 * COLUMNS, height), dpi=90)
    # Fixed margins: matplotlib's constrained layout costs about 0.5 s a grid, at the end of every run.
    figure.subplots_adjust(left=0.05, right=0.99, bottom=0.45 / height, top=1 - 0.35 / height, wspace=0.25, hspace=0.6)
    axes = figure.subplots(rows, COLUMNS, squeeze=False).flatten()
    for ax, panel in zip(axes, panels):
        _draw_panel(ax, panel, runs)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _draw_panel(ax, panel: Panel, runs) -> None:
    from matplotlib.ticker import MaxNLocator

    overlay = len(runs) > 1
    colors = [f"C{index}" for index in range(10)]
    for run_index, (label, metrics, events) in enumerate(runs):
        lines = panel.lines[:1] if overlay else panel.lines
        for line_index, (key, line_label) in enumerate(lines):
            found = points(metrics, key)
            if not found:
                continue
            color = colors[(run_index if overlay else line_index) % len(colors)]
            name = label if overlay else line_label
            _draw_line(ax, found, color, name, smooth=panel.smooth and line_index == 0, marker="o" if key.startswith("eval_") else None)
            if line_index == 0 and not overlay:
                _draw_spread(ax, panel, metrics, color)
        for event in events:
            if event.check in panel.checks and event.status in EVENT_COLORS:
                ax.axvline(event.step, color=EVENT_COLORS[event.status], linestyle=":", linewidth=1.5)
    for reference_label, value in panel.references:
        ax.axhline(value, color="0.4", linestyle="--", linewidth=1, label=reference_label)
    if panel.unit_range:
        ax.set_ylim(-0.02, 1.05)
    ax.set_title(panel.title, fontsize="medium")
    ax.set_xlabel("step", fontsize="small")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if ax.get_legend_handles_labels()[0] and (overlay or len(panel.lines) > 1 or panel.references):
        ax.legend(fontsize="x-small")


def _draw_line(ax, found, color: str, label: str, *, smooth: bool, marker: str | None) -> None:
    steps, values = zip(*found)
    if smooth and len(values) > 3 * SMOOTHING_WINDOW:
        ax.plot(steps, values, color=color, alpha=0.3, linewidth=1)
        ax.plot(steps, moving_average(list(values), SMOOTHING_WINDOW), color=color, linewidth=1.8, label=label)
    else:
        ax.plot(steps, values, color=color, linewidth=1.5, marker=marker, markersize=3, label=label)


def _draw_spread(ax, panel: Panel, metrics, color: str) -> None:
    main = dict(points(metrics, panel.lines[0][0]))
    if panel.range_keys:
        low, high = (dict(series(metrics, key)) for key in panel.range_keys)
        steps = [step for step in main if step in low and step in high]
        if steps:
            ax.fill_between(steps, [low[s] for s in steps], [high[s] for s in steps], color=color, alpha=0.12, linewidth=0)


# ----------------------------------------------------------------------------- curves.png


def plot_curves(run: RunRecord) -> bytes | None:
    """A PNG of the reward curve and, when logged, the held-out accuracy curve; None without any reward."""
    from matplotlib import rc_context

    rewards = series(run.metrics, "reward")
    accuracy = series(run.metrics, ACCURACY_KEY)
    if not rewards and not accuracy:
        return None
    with rc_context(STYLE):
        return _curves_png(run, rewards, accuracy)


def _curves_png(run: RunRecord, rewards, accuracy) -> bytes:
    from matplotlib.figure import Figure

    panels = 2 if rewards and accuracy else 1
    figure = Figure(figsize=(6.0 * panels, 3.6), dpi=100)
    figure.subplots_adjust(left=0.08 / panels, right=0.99, bottom=0.14, top=0.92, wspace=0.18)  # fixed: see plot_panels
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
            found = series(metrics, f"rewards/{name}/mean")
            if found:
                ax.plot(*zip(*found), linewidth=1, label=f"{name} (mean)")
    ax.set_title("reward")
    ax.set_xlabel("step")
    ax.legend(fontsize="small")


def _draw_accuracy(ax, accuracy: list[tuple[int, float]]) -> None:
    steps, values = zip(*accuracy)
    ax.plot(steps, values, color="tab:green", marker="o", markersize=3, linewidth=2)
    ax.set_title("held-out greedy accuracy")
    ax.set_xlabel("step")
    ax.set_ylim(0.0, 1.0)
