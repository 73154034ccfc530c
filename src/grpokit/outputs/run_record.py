"""Reading what a run leaves in its output directory: the common ground of the report and the compare view.

| file | written by | one line / content |
|---|---|---|
| `metrics.jsonl` | the trainer | one JSON object per step: `step`, `reward`, `rewards/<name>/mean`, ... |
| `health.jsonl` | the health checks and the hang watchdog | one event per line (`grpokit.outputs.health_events`) |
| `grpokit_config.yaml` | the trainer | the resolved config, secrets masked |
| `completions.jsonl` | the demo's held-out evaluation | `{"step", "prompt", "completion", "reward"}` |
| `sample_completions.jsonl` | the trainer | the same shape, training completions |
| `before_after_completions.jsonl` | the trainer | the same shape: the same prompts at step 0 and at the last step |
| `summary.json` | the demo | `accuracy_before`, `accuracy_after`, `train_seconds`, ... |
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from grpokit.errors import ConfigError
from grpokit.outputs.files import (
    BEFORE_AFTER_FILE,
    CONFIG_FILE,
    HEALTH_FILE,
    HELDOUT_COMPLETIONS_FILE,
    METRICS_FILE,
    SAMPLE_COMPLETIONS_FILE,
    SUMMARY_FILE,
)
from grpokit.outputs.health_events import HealthEvent, read_health_events


@dataclass
class RunRecord:
    """What a run's output directory holds; every part but `metrics` may be empty."""

    output_dir: Path
    metrics: list[dict[str, Any]]  # training lines of metrics.jsonl, in step order
    config: dict[str, Any] | None
    completions: list[dict[str, Any]]
    summary: dict[str, Any] | None
    health_events: list[HealthEvent] = field(default_factory=list)
    eval_metrics: list[dict[str, Any]] = field(default_factory=list)  # the `eval_*` lines of metrics.jsonl
    before_after: list[dict[str, Any]] = field(default_factory=list)  # the same prompts before and after training

    @property
    def name(self) -> str:
        return self.output_dir.name or str(self.output_dir)


def read_jsonl(path: str | Path, *, limit: int | None = None) -> list[dict[str, Any]]:
    """The JSON objects of a JSON Lines file (the first `limit` of them); a line cut short (a run still writing) is skipped."""
    path = Path(path)
    if not path.is_file():
        return []
    records: list[dict[str, Any]] = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if limit is not None and len(records) >= limit:
                break
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
    training, evaluating = [], []
    for line in sorted(lines, key=lambda line: line.get("step", 0)):
        (evaluating if any(key.startswith("eval_") for key in line) else training).append(line)
    config_path = output_dir / CONFIG_FILE
    config = yaml.safe_load(config_path.read_text(encoding="utf-8")) if config_path.is_file() else None
    summary_path = output_dir / SUMMARY_FILE
    summary = json.loads(summary_path.read_text(encoding="utf-8")) if summary_path.is_file() else None
    return RunRecord(
        output_dir=output_dir,
        metrics=training,
        config=config if isinstance(config, dict) else None,
        completions=read_jsonl(output_dir / HELDOUT_COMPLETIONS_FILE) or read_jsonl(output_dir / SAMPLE_COMPLETIONS_FILE),
        summary=summary if isinstance(summary, dict) else None,
        health_events=read_health_events(output_dir / HEALTH_FILE),
        eval_metrics=evaluating,
        before_after=read_jsonl(output_dir / BEFORE_AFTER_FILE),
    )


def number(value: Any) -> float | None:
    """A finite number as a float, or None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def series(metrics: list[dict[str, Any]], key: str) -> list[tuple[int, float]]:
    """(step, value) for every line that holds a finite number under `key`."""
    points = []
    for line in metrics:
        value = number(line.get(key))
        if value is not None:
            points.append((int(line.get("step", 0)), value))
    return points


def reward_names(metrics: list[dict[str, Any]]) -> list[str]:
    """The names in `rewards/<name>/mean` keys, in the order they first appear."""
    return keys_matching(metrics, "rewards/", "/mean")


def keys_matching(metrics: list[dict[str, Any]], prefix: str, suffix: str = "") -> list[str]:
    """The middle part of every key that starts with `prefix` and ends with `suffix`, in order of first appearance."""
    names: list[str] = []
    for line in metrics:
        for key in line:
            if key.startswith(prefix) and key.endswith(suffix) and len(key) > len(prefix) + len(suffix):
                name = key[len(prefix) : len(key) - len(suffix)]
                if name not in names:
                    names.append(name)
    return names


def tokens_per_second(metrics: list[dict[str, Any]]) -> list[tuple[int, float]]:
    """Tokens processed per second between consecutive logged steps, from `num_tokens` (cumulative) and `step_time`."""
    points = []
    previous: tuple[int, float] | None = None
    for line in metrics:
        tokens, step_time, step = number(line.get("num_tokens")), number(line.get("step_time")), int(line.get("step", 0))
        if tokens is None:
            continue
        if previous is not None and step_time and step > previous[0] and tokens >= previous[1]:
            points.append((step, (tokens - previous[1]) / (step_time * (step - previous[0]))))
        previous = (step, tokens)
    return points
