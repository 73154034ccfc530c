"""`grpokit compare A B` (or `grpokit report A B`): two or more runs side by side, in one self-contained page.

- curves overlaid: the training-dynamics panels of the report (`grpokit.outputs.report_plots`) and the
  held-out accuracy, one colour per run;
- health: every check's status in every run;
- summary: steps, the reward at the start and the end (means of 10 logged steps), seconds per step,
  tokens/s, held-out accuracy when recorded;
- configs diffed: every key whose value differs (nested sections as dotted keys);
- sample completions for the same prompts: each run's latest completion of every prompt that all runs
  recorded (the demo's held-out prompts, or training prompts the runs happened to share).

Example:
    >>> write_compare(["outputs/lr-1e-4", "outputs/lr-3e-4"], "compare.html")
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grpokit.errors import ConfigError
from grpokit.formatting import fmt
from grpokit.outputs.files import atomic_write_bytes
from grpokit.outputs.health_summary import health_findings
from grpokit.outputs.report import completion_cell, encoded, jinja_environment
from grpokit.outputs.report_health import health_rows, health_verdict
from grpokit.outputs.report_plots import ACCURACY_KEY, Panel, dynamics_panels, plot_panels
from grpokit.outputs.report_sections import SUMMARY_WINDOW, flatten, run_summary  # noqa: F401 - part of this module's API
from grpokit.outputs.run_record import RunRecord, load_run, series

COMPARE_TEMPLATE_FILE = "compare_template.html"  # package data next to the report's template
MAX_PROMPT_ROWS = 20
NOT_SET = "(not set)"


@dataclass(frozen=True)
class PromptRow:
    prompt: str
    answer: str | None
    records: list[dict[str, Any] | None]  # each run's latest completion of this prompt


def run_labels(runs: list[RunRecord]) -> list[str]:
    """Each run's directory name, or more of its path where two names are the same."""
    names = [run.name for run in runs]
    if len(set(names)) == len(names):
        return names
    return [str(run.output_dir) for run in runs]


def config_diff(configs: list[dict[str, Any] | None]) -> list[tuple[str, list[str]]]:
    """(dotted key, each run's value) for every key whose value is not the same in all runs."""
    flats = [flatten(config or {}) for config in configs]
    keys = list(dict.fromkeys(key for flat in flats for key in flat))
    rows = []
    for key in keys:
        values = [flat.get(key, NOT_SET) for flat in flats]
        if len(set(values)) > 1:
            rows.append((key, values))
    return rows


def common_prompt_rows(runs: list[RunRecord], limit: int = MAX_PROMPT_ROWS) -> list[PromptRow]:
    """The prompts every run recorded a completion for, each run's latest completion of each, in the first run's order."""
    latest: list[dict[str, dict[str, Any]]] = []
    for run in runs:
        by_prompt: dict[str, dict[str, Any]] = {}
        for record in sorted(run.completions, key=lambda r: int(r.get("step", 0))):
            by_prompt[str(record.get("prompt", ""))] = record
        latest.append(by_prompt)
    shared = [prompt for prompt in latest[0] if all(prompt in by_prompt for by_prompt in latest[1:])] if latest else []
    return [
        PromptRow(prompt, latest[0][prompt].get("answer"), [by_prompt.get(prompt) for by_prompt in latest])
        for prompt in shared[:limit]
    ]


def compare_png(runs: list[RunRecord], labels: list[str]) -> bytes | None:
    """The overlaid panels of every run (training and eval lines)."""
    metric_sets = [sorted(run.metrics + run.eval_metrics, key=lambda line: line.get("step", 0)) for run in runs]
    panels = dynamics_panels(metric_sets, runs[0].config)
    if any(series(metrics, ACCURACY_KEY) for metrics in metric_sets):
        panels.insert(1, Panel("held-out accuracy", ((ACCURACY_KEY, "accuracy"),), unit_range=True))
    return plot_panels([(label, metrics, run.health_events) for label, metrics, run in zip(labels, metric_sets, runs)], panels)


def render_compare(runs: list[RunRecord], png: bytes | None) -> str:
    """The compare page as one HTML string; every value from the runs is escaped."""
    environment = jinja_environment()
    labels = run_labels(runs)
    summaries = [run_summary(run) for run in runs]
    checks = [health_rows(run) for run in runs]
    if len({len(rows) for rows in checks}) > 1:  # some runs used tools: every run lists the agent's checks, row for row
        checks = [health_rows(run, agent_checks=True) for run in runs]
    prompt_rows = common_prompt_rows(runs)
    return environment.get_template(COMPARE_TEMPLATE_FILE).render(
        labels=labels,
        dirs=[str(run.output_dir) for run in runs],
        generated=datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        verdicts=[health_verdict(rows, health_findings(run.metrics, run.config)) for rows, run in zip(checks, runs)],
        check_names=[row.name for row in checks[0]],
        checks=checks,
        summary_keys=[key for key in summaries[0] if any(summary[key] is not None for summary in summaries)],
        summaries=summaries,
        plot=encoded(png),
        config_rows=config_diff([run.config for run in runs]),
        missing_config=[label for label, run in zip(labels, runs) if run.config is None],
        prompt_rows=prompt_rows,
        has_answers=any(row.answer is not None for row in prompt_rows),
        fmt=fmt,
        cell=completion_cell(environment),
    )


def write_compare(run_dirs: list[str | Path], output: str | Path) -> Path:
    """Write the compare page of `run_dirs` (two or more run output directories) to `output`.

    Raises:
        ConfigError: fewer than two directories, or one holds no `metrics.jsonl`.
    """
    if len(run_dirs) < 2:
        raise ConfigError(
            f"compare needs two or more run directories, got {len(run_dirs)}",
            fix="grpokit compare OUTPUT_DIR_A OUTPUT_DIR_B (grpokit report DIR writes one run's report)",
        )
    runs = [load_run(directory) for directory in run_dirs]
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    html = render_compare(runs, compare_png(runs, run_labels(runs)))
    return atomic_write_bytes(output, html.encode("utf-8"))
