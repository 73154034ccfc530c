"""The parts of the report that are tables of a run's facts: summary, setup, config, evaluation.

Pure functions over what `grpokit.outputs.run_record` reads (and `run_info.json`, `eval/eval.json`),
shared by the report and the compare view:

- `summary_rows`: the run's numbers with human names and units (`summary.json` when the demo wrote
  one, else figures from `metrics.jsonl`: steps, reward at the start and the end, time per step, ...);
- `setup_rows`: the versions of grpokit, TRL, transformers, torch, ... and the hardware it ran on;
- `config_rows`: the resolved config's values that differ from the defaults first (grpokit's options
  against the schema, TRL's fields against the installed TRL, as the run recorded them), then the rest;
- `override_rows`: the config's values the run did not use as written, and why (`run_info.json`'s
  `overrides`: changed for the machine or launch, or acting on nothing);
- `eval_section`: `grpokit eval` results, when `eval/eval.json` is in the run's directory (with tools,
  one sample conversation from `eval/eval_samples.jsonl`).
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grpokit.formatting import duration, fmt
from grpokit.outputs.conversation import Turn, conversation_turns, has_tool_messages
from grpokit.outputs.files import EVAL_DIR, EVAL_FILE, EVAL_SAMPLES_FILE
from grpokit.outputs.report_plots import ACCURACY_KEY
from grpokit.outputs.run_record import RunRecord, number, series, tokens_per_second
from grpokit.outputs.tool_metrics import CALLS_PER_COMPLETION, FAILURE_SHARE

SUMMARY_WINDOW = 10  # logged steps averaged for the start and end reward

# summary.json keys (the demo's) -> what a reader calls them, and how to show the value
SUMMARY_NAMES: dict[str, tuple[str, str]] = {
    "accuracy_before": ("held-out accuracy before training", "share"),
    "accuracy_after": ("held-out accuracy after training", "share"),
    "accuracy_gain": ("held-out accuracy gain", "points"),
    "tool_call_rate_before": ("held-out tool-call rate before training", "share"),
    "tool_call_rate_after": ("held-out tool-call rate after training", "share"),
    "heldout_problems": ("held-out problems", "count"),
    # grpokit demo --task aws-sample: the sample's format reward and ROUGE-L precision, greedy then sampled
    "format_before": ("held-out format reward before training (greedy)", "number"),
    "format_after": ("held-out format reward after training (greedy)", "number"),
    "rouge_l_precision_before": ("held-out ROUGE-L precision before training (greedy)", "number"),
    "rouge_l_precision_after": ("held-out ROUGE-L precision after training (greedy)", "number"),
    "sampled_format_before": ("held-out format reward before training (sampled)", "number"),
    "sampled_format_after": ("held-out format reward after training (sampled)", "number"),
    "sampled_rouge_l_precision_before": ("held-out ROUGE-L precision before training (sampled)", "number"),
    "sampled_rouge_l_precision_after": ("held-out ROUGE-L precision after training (sampled)", "number"),
    "heldout_prompts": ("held-out prompts", "count"),
    "samples_per_prompt": ("sampled completions per held-out prompt", "count"),
    "sample_temperature": ("their temperature", "number"),
    "load_average_start": ("machine load average before training (1 min)", "number"),
    "load_average_end": ("machine load average after training (1 min)", "number"),
    "torch_threads": ("torch threads", "count"),
    "steps": ("training steps", "count"),
    "train_seconds": ("training time (the GRPO steps)", "seconds"),
    "train_cpu_seconds": ("training CPU time (the GRPO steps, this process)", "seconds"),
    "threads": ("torch threads", "count"),
    "heldout_eval_seconds": ("held-out evaluation time", "seconds"),
    "total_seconds": ("total time", "seconds"),
    "reward_first": ("reward at the first step", "number"),
    "reward_last": ("reward at the last step", "number"),
    "reward_first_mean": (f"reward, mean of the first {SUMMARY_WINDOW} steps", "number"),
    "reward_last_mean": (f"reward, mean of the last {SUMMARY_WINDOW} steps", "number"),
    "seed": ("seed", "count"),
}


@dataclass(frozen=True)
class Row:
    """One line of a two-column table: what, and its value as shown."""

    name: str
    value: str


def shown(value: Any, unit: str = "number") -> str:
    """A value in its unit: `57.0%`, `+30.0 points`, `12 s`, `1,200`, `0.412`; `-` when there is none.

    >>> shown(0.57, "share"), shown(0.3, "points"), shown(12.4, "seconds"), shown(1200, "count"), shown(None)
    ('57.0%', '+30.0 points', '12 s', '1,200', '-')
    """
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if unit == "share":
        return f"{value:.1%}"
    if unit == "points":
        return f"{value * 100:+.1f} points"
    if unit == "seconds":
        return duration(value)
    if unit == "count":
        return f"{value:,.0f}"
    return f"{value:,}" if isinstance(value, int) else fmt(value)


def _mean(values: list[float]) -> float | None:
    return math.fsum(values) / len(values) if values else None


def run_summary(run: RunRecord) -> dict[str, Any]:
    """The numbers of one run from its metrics (the compare view's rows; the report's when there is no summary.json)."""
    rewards = [value for _, value in series(run.metrics, "reward")]
    step_times = [value for _, value in series(run.metrics, "step_time")]
    throughput = [value for _, value in tokens_per_second(run.metrics)]
    accuracy = series(run.metrics, ACCURACY_KEY)
    return {
        "steps logged": len(run.metrics),
        "last step": run.metrics[-1].get("step") if run.metrics else None,
        f"reward, first {SUMMARY_WINDOW} steps": _mean(rewards[:SUMMARY_WINDOW]),
        f"reward, last {SUMMARY_WINDOW} steps": _mean(rewards[-SUMMARY_WINDOW:]),
        "seconds / step (median)": statistics.median(step_times) if step_times else None,
        "tokens / s (median)": statistics.median(throughput) if throughput else None,
        "held-out accuracy, first": accuracy[0][1] if accuracy else None,
        "held-out accuracy, last": accuracy[-1][1] if accuracy else None,
        f"tool calls per completion, last {SUMMARY_WINDOW} steps": _mean([value for _, value in series(run.metrics, CALLS_PER_COMPLETION)][-SUMMARY_WINDOW:]),
        f"tool failure share, last {SUMMARY_WINDOW} steps": _mean([value for _, value in series(run.metrics, FAILURE_SHARE)][-SUMMARY_WINDOW:]),
    }


def _training_seconds(metrics: list[dict[str, Any]]) -> float | None:
    """The training loop's time: each log's seconds per step times the steps since the previous log."""
    total, previous, seen = 0.0, 0, False
    for line in metrics:
        step, seconds = int(line.get("step", 0)), number(line.get("step_time"))
        if seconds is not None and step > previous:
            total, seen = total + seconds * (step - previous), True
        previous = step
    return total if seen else None


def summary_rows(run: RunRecord) -> list[Row]:
    """The report's summary: the demo's summary.json with names and units, else the run's figures from its metrics."""
    if run.summary:
        rows = []
        for key, value in run.summary.items():
            if isinstance(value, (dict, list)):
                continue  # curves and nested data are drawn, not listed
            name, unit = SUMMARY_NAMES.get(key, (key.replace("_", " "), "number"))
            rows.append(Row(name, shown(value, unit)))
        return rows
    figures = run_summary(run)
    rows = [
        Row("training steps", shown(figures["last step"], "count")),
        Row("logged steps", shown(figures["steps logged"], "count")),
        Row("training time (the steps only)", shown(_training_seconds(run.metrics), "seconds")),
        Row(f"reward, mean of the first {SUMMARY_WINDOW} logged steps", shown(figures[f"reward, first {SUMMARY_WINDOW} steps"])),
        Row(f"reward, mean of the last {SUMMARY_WINDOW} logged steps", shown(figures[f"reward, last {SUMMARY_WINDOW} steps"])),
        Row("time per step (median)", shown(figures["seconds / step (median)"], "number") + " s"),
        Row("tokens per second (median)", shown(figures["tokens / s (median)"], "count")),
        Row(f"tool calls per completion, mean of the last {SUMMARY_WINDOW} logged steps", shown(figures[f"tool calls per completion, last {SUMMARY_WINDOW} steps"])),
        Row(f"tool failure share, mean of the last {SUMMARY_WINDOW} logged steps with a call", shown(figures[f"tool failure share, last {SUMMARY_WINDOW} steps"], "share")),
    ]
    return [row for row in rows if not row.value.startswith("-")]


def setup_rows(info: dict[str, Any] | None) -> list[Row]:
    """Versions and hardware from `run_info.json`; [] for a run that did not record them."""
    if not info:
        return []
    versions = info.get("versions") or {}
    hardware = info.get("hardware") or {}
    rows = [Row(name, str(version)) for name, version in versions.items() if version]
    gpus = hardware.get("gpus") or []
    if gpus:
        names = sorted({f"{gpu.get('name')} ({gpu.get('memory_gb')} GB)" for gpu in gpus})
        rows.append(Row("GPUs", f"{len(gpus)} x {', '.join(names)}"))
    else:
        rows.append(Row("GPUs", "none (CPU)"))
    cpu = f"{hardware.get('cpu')} ({hardware.get('cpu_cores')} cores"
    cpu += f", {hardware.get('memory_gb')} GB memory)" if hardware.get("memory_gb") else ")"
    rows += [Row("CPU", cpu), Row("processes", str(hardware.get("processes", 1))), Row("platform", str(hardware.get("platform")))]
    return rows


def flatten(value: Any, prefix: str = "") -> dict[str, str]:
    """A config as dotted keys and display text: sections become `section.key`, lists stay one JSON value."""
    if isinstance(value, dict) and (value or not prefix):
        flat: dict[str, str] = {}
        for key, item in value.items():
            flat.update(flatten(item, f"{prefix}{key}."))
        return flat
    return {prefix.rstrip("."): json.dumps(value, ensure_ascii=False) if isinstance(value, list) else str(value)}


REQUIRED_OPTIONS = ("model_id",)  # options without a default, listed with the values that differ


@dataclass(frozen=True)
class ConfigRow:
    key: str
    value: str
    default: str | None = None  # None: in the rest (equal to its default, or no default known)
    origin: str = ""


def option_defaults() -> dict[str, str]:
    """grpokit's options at their schema defaults, flattened (`health.kl.action`, ...)."""
    from grpokit.config.schema import GrpokitOptions

    defaults = {}
    for name, field in GrpokitOptions.model_fields.items():
        if field.is_required():
            continue
        value = field.get_default(call_default_factory=True)
        defaults[name] = value.model_dump(mode="json") if hasattr(value, "model_dump") else value
    return flatten(defaults)


def config_rows(config: dict[str, Any] | None, info: dict[str, Any] | None) -> tuple[list[ConfigRow], list[ConfigRow]]:
    """(the values that differ from the defaults, the rest) of a resolved config.

    grpokit's options are compared with the schema's defaults; TRL's fields with the installed TRL's
    defaults as the run recorded them (`run_info.json`'s `trl_differences`). A TRL field of a run
    that did not record them counts as the rest.
    """
    flat = flatten(config or {})
    defaults = option_defaults()
    trl = {entry["key"]: entry for entry in (info or {}).get("trl_differences", []) if isinstance(entry, dict) and "key" in entry}
    differing, rest = [], []
    for key, value in flat.items():
        if key in trl:
            differing.append(ConfigRow(key, value, str(trl[key].get("default")), str(trl[key].get("origin", ""))))
        elif key in defaults and defaults[key] != value:
            differing.append(ConfigRow(key, value, defaults[key], "grpokit option"))
        elif key in REQUIRED_OPTIONS:  # no default: always the run's own choice
            differing.append(ConfigRow(key, value, "(none)", "grpokit option"))
        else:
            rest.append(ConfigRow(key, value))
    return differing, rest


@dataclass(frozen=True)
class OverrideRow:
    """A value of the config the run did not use as written: as written, as used (`no effect`: inert), and why."""

    key: str
    written: str
    used: str
    why: str


def override_rows(info: dict[str, Any] | None) -> list[OverrideRow]:
    """`run_info.json`'s `overrides`, as the report's config section lists them (none for an older run)."""
    rows = []
    for entry in (info or {}).get("overrides", []):
        if not isinstance(entry, dict) or "key" not in entry:
            continue
        used = "no effect" if entry.get("effect") == "none" else json.dumps(entry.get("used"), ensure_ascii=False)
        rows.append(OverrideRow(str(entry["key"]), json.dumps(entry.get("written"), ensure_ascii=False), used, str(entry.get("why", ""))))
    return rows


@dataclass(frozen=True)
class EvalSection:
    """`grpokit eval` results: where they are, the model and split, and one row per figure."""

    path: Path
    title: str
    columns: list[str]  # "", the model, and with --compare the base and the difference
    rows: list[list[str]]
    turns: list[Turn] | None = None  # with tools: the first sample that called one, turn by turn
    turns_from: str = ""  # which sample that is


def eval_section(output_dir: Path) -> EvalSection | None:
    """The run's `eval/eval.json` (written by `grpokit eval --model OUTPUT_DIR`) as a table; None when absent."""
    path = Path(output_dir) / EVAL_DIR / EVAL_FILE
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    if not isinstance(result, dict):
        return None
    compare = result.get("compare") if isinstance(result.get("compare"), dict) else None
    base, difference = (compare.get("base") or {}, compare.get("difference") or {}) if compare else ({}, {})
    figures = [(f"reward: {name}", ("reward_means", name)) for name in (result.get("reward_means") or {})]
    figures += [("reward total (weighted)", ("total_mean", None)), ("accuracy", ("accuracy", None))]
    figures += [(key, (key, None)) for key in result if key.startswith("pass@")]
    rows = []
    for label, (key, name) in figures:
        value = (result.get(key) or {}).get(name) if name else result.get(key)
        if value is None and (name is None or not base):
            continue
        row = [label, shown(value)]
        if compare:
            other = (base.get(key) or {}).get(name) if name else base.get(key)
            change = difference.get(name if name else {"total_mean": "total"}.get(key, key))
            row += [shown(other), "-" if change is None else f"{change:+.3f}"]
        rows.append(row)
    samples = result.get("num_samples", 1)
    title = (
        f"{result.get('model')} on the {result.get('split')} split: {result.get('num_rows')} rows, "
        + ("greedy" if samples == 1 else f"{samples} samples each")
    )
    columns = ["", "this model"] + ([f"base ({base.get('model')})", "difference"] if compare else [])
    sample = _first_tool_sample(path.parent / EVAL_SAMPLES_FILE)
    if sample is None:
        return EvalSection(path, title, columns, rows)
    turns_from = f"{sample.get('model')}, row {sample.get('row')}, reward total {shown(sample.get('total'))}"
    return EvalSection(path, title, columns, rows, conversation_turns(sample["completion"]), turns_from)


def _first_tool_sample(path: Path) -> dict[str, Any] | None:
    """The first sample of `eval_samples.jsonl` whose completion made a tool call; None without one (or the file)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    for line in lines:
        try:
            sample = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(sample, dict) and has_tool_messages(sample.get("completion")):
            return sample
    return None
