"""The HTML report of a training run: is it healthy, curves, per-reward statistics, sample completions, config.

`write_report(output_dir)` reads what a run leaves in its output directory (`grpokit.outputs.run_record`),
finished, stopped or still running, and writes next to it:

- `curves.png`: the reward per step (and each reward's mean when there are several) and, when the
  run logged `heldout_accuracy` (the demo does), the held-out accuracy per evaluation;
- `dynamics.png`: one panel per quantity the run logged (each reward, completion length and the
  truncated share, the zero-spread share, KL, entropy, clip ratio, learning rate, grad norm, loss,
  step time, tokens/s, dynamic sampling), health events marked (`grpokit.outputs.report_plots`);
- `report.html`: one self-contained page (the plots embedded as base64, no external assets): the
  health section first (each check ok / warned / tripped, at which step: `grpokit.outputs.report_health`),
  then the summary (`summary.json`, when present), the curves, a table of statistics per reward,
  sample completions before and after training and the resolved config.

`grpokit report A B` (or `grpokit compare`) puts runs side by side: `grpokit.outputs.compare`.

Example:
    >>> paths = write_report("outputs/demo")
    >>> paths.html                    # PosixPath('outputs/demo/report.html')
"""

from __future__ import annotations

import base64
import datetime
import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from grpokit.formatting import fmt
from grpokit.outputs.conversation import MESSAGES_KEY, conversation_turns, is_conversation
from grpokit.outputs.files import (
    CONFIG_FILE,
    DYNAMICS_PLOT_FILE,
    HEALTH_FILE,
    HELDOUT_COMPLETIONS_FILE,
    PLOT_FILE,
    REPORT_FILE,
    atomic_write_bytes,
)
from grpokit.outputs.health_summary import health_findings
from grpokit.outputs.report_health import health_lines, health_rows, health_verdict
from grpokit.outputs.report_plots import (  # noqa: F401 - moving_average and SMOOTHING_WINDOW: part of this module's API
    ACCURACY_KEY,
    SMOOTHING_WINDOW,
    dynamics_panels,
    moving_average,
    plot_curves,
    plot_panels,
)
from grpokit.outputs.report_sections import config_rows, eval_section, override_rows, setup_rows, summary_rows
from grpokit.outputs.run_info import read_run_info
from grpokit.outputs.run_record import (  # noqa: F401 - read_jsonl, load_run: part of this module's API
    RunRecord,
    load_run,
    read_jsonl,
    reward_names,
    series,
)
from grpokit.outputs.run_record import number as _number

REPORT_TEMPLATE_FILE = "report_template.html"  # package data: the page layout and style


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
    dynamics: Path | None = None  # None when no step has logged anything to draw
    health: list[str] = field(default_factory=list)  # the verdict and what held over the run, one line each


# ----------------------------------------------------------------------------- statistics


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

    Returns (first step, last step, rows in the order prompts first appear). Prompts recorded at both
    steps are the rows when there are any (training draws other prompts each step, so a row with only
    one side says little); otherwise the first step's completions, with `after` None in every row and
    no last step.
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
    paired = {prompt: row for prompt, row in rows.items() if row["before"] is not None and row["after"] is not None}
    if not paired:
        rows = {prompt: {**row, "after": None} for prompt, row in rows.items() if row["before"] is not None}
    return first, (last if paired else None), [
        CompletionRow(prompt=prompt, answer=row["answer"], before=row["before"], after=row["after"])
        for prompt, row in (paired or rows).items()
    ]


def completion_source(run: RunRecord) -> tuple[list[dict[str, Any]], str]:
    """The completions the report pairs, and what they are: held-out (the demo), before/after, or training samples."""
    if (run.output_dir / HELDOUT_COMPLETIONS_FILE).is_file():
        return run.completions, "held-out prompts, answered greedily at each evaluation"
    if len({int(record.get("step", 0)) for record in run.before_after}) > 1:
        return run.before_after, "the first training prompts, answered greedily by the model before training and after it"
    return run.completions, "training completions as TRL sampled them; each step draws other prompts"


# ----------------------------------------------------------------------------- HTML


def report_template() -> str:
    """The page's Jinja template, shipped as package data next to this module."""
    return resources.files("grpokit.outputs").joinpath(REPORT_TEMPLATE_FILE).read_text(encoding="utf-8")


CONVERSATION_TEMPLATE_FILE = "conversation.html"  # package data: one completion drawn turn by turn
CELL_TEMPLATE = (
    '{% if record is none %}<td class="muted">-</td><td></td>'
    '{% else %}<td>{% if turns %}{% include "' + CONVERSATION_TEMPLATE_FILE + '" %}'
    "{% elif record.completion %}<code>{{ record.completion }}</code>"
    '{% else %}<span class="muted">(empty)</span>{% endif %}</td>'
    '<td class="num {{ css }}">{{ fmt(record.reward) }}</td>{% endif %}'
)


def jinja_environment():
    """The environment of grpokit's pages: every value escaped, an unknown name an error."""
    import jinja2

    # The page templates and the style they both include are package data next to this module.
    loader = jinja2.PackageLoader("grpokit.outputs", ".")
    return jinja2.Environment(loader=loader, autoescape=True, undefined=jinja2.StrictUndefined)


def completion_cell(environment):
    """A function that renders one completion and its reward as two table cells (`-` when not recorded).

    A record with `messages` (the completion as chat messages) is drawn as a conversation, turn by turn
    (`conversation.html`); any other as its `completion` text.
    """
    from markupsafe import Markup

    cell_template = environment.from_string(CELL_TEMPLATE)

    def cell(record: dict[str, Any] | None):
        reward = _number(record.get("reward")) if record else None
        css = "" if reward is None else ("ok" if reward > 0 else "bad")
        messages = record.get(MESSAGES_KEY) if record else None
        turns = conversation_turns(messages) if is_conversation(messages) else None
        return Markup(cell_template.render(record=record, fmt=fmt, css=css, turns=turns))

    return cell


def encoded(png: bytes | None) -> str | None:
    return base64.b64encode(png).decode("ascii") if png else None


def hang_stack_files(run: RunRecord) -> list[str]:
    from grpokit.outputs.files import HANG_STACKS_DIR

    return [str(path) for path in sorted((run.output_dir / HANG_STACKS_DIR).glob("*.txt"))]


def render_report(run: RunRecord, plot_png: bytes | None, dynamics_png: bytes | None = None) -> str:
    """The report as one HTML string; every value from the run is escaped."""
    environment = jinja_environment()
    completions, completions_are = completion_source(run)
    first_step, after_step, rows = completion_rows(completions)
    checks = health_rows(run)
    findings = health_findings(run.metrics, run.config)
    info = read_run_info(run.output_dir)
    config_differs, config_rest = config_rows(run.config, info)
    return environment.get_template(REPORT_TEMPLATE_FILE).render(
        health=checks,
        verdict=health_verdict(checks, findings),
        findings=findings,
        health_file=HEALTH_FILE if (run.output_dir / HEALTH_FILE).is_file() else None,
        stack_files=hang_stack_files(run),
        dynamics=encoded(dynamics_png),
        title=run.output_dir.name or str(run.output_dir),
        output_dir=str(run.output_dir),
        steps=len(run.metrics),
        last_step=run.metrics[-1].get("step") if run.metrics else None,
        generated=datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        summary=summary_rows(run),
        setup=setup_rows(info),
        evaluation=eval_section(run.output_dir),
        plot=encoded(plot_png),
        reward_stats=reward_statistics(run.metrics),
        fmt=fmt,
        cell=completion_cell(environment),
        completion_rows=rows,
        completions_are=completions_are,
        has_answers=any(row.answer is not None for row in rows),
        first_step=first_step,
        after_step=after_step,
        config_differs=config_differs,
        config_rest=config_rest,
        config_overrides=override_rows(info),
        config_file=CONFIG_FILE if run.config else None,
    )


def dynamics_png(run: RunRecord) -> bytes | None:
    """The training-dynamics panels of one run (training and eval lines, health events marked)."""
    metrics = sorted(run.metrics + run.eval_metrics, key=lambda line: line.get("step", 0))
    return plot_panels([(run.name, metrics, run.health_events)], dynamics_panels([metrics], run.config))


def write_report(output_dir: str | Path) -> ReportPaths:
    """Write `curves.png`, `dynamics.png` and `report.html` into a run's output directory (see the module docstring).

    Safe to call while the run is still training, or after it stopped: it reads what is there. Every
    file is written whole (to a temporary name, then renamed), so a reader never sees half a report.

    Raises:
        ConfigError: `output_dir` holds no `metrics.jsonl`.
    """
    run = load_run(output_dir)
    plot_png, panels_png = plot_curves(run), dynamics_png(run)
    plot_path = atomic_write_bytes(run.output_dir / PLOT_FILE, plot_png) if plot_png is not None else None
    panels_path = atomic_write_bytes(run.output_dir / DYNAMICS_PLOT_FILE, panels_png) if panels_png is not None else None
    html = render_report(run, plot_png, panels_png).encode("utf-8")
    checks = health_rows(run)
    findings = health_findings(run.metrics, run.config)
    return ReportPaths(
        html=atomic_write_bytes(run.output_dir / REPORT_FILE, html),
        plot=plot_path,
        dynamics=panels_path,
        health=health_lines(health_verdict(checks, findings), checks, findings),
    )
