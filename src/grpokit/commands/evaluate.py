"""`grpokit eval`: generate completions for a dataset split, score them with the configured rewards.

The recipe: load config -> rewards -> the split's rows (checked against the rewards) -> the model to
evaluate (a saved adapter dir, a full model dir, a Hugging Face id or `builtin:tiny`) -> generate
(greedy, or K samples per prompt for pass@k) -> score every completion with every reward, plus task
accuracy where a reference column exists -> `eval.json` and `eval_samples.jsonl`. `--compare BASE`
runs the same for a second model and adds the difference per reward.

Example:
    >>> report = run_eval(load_config("run.yaml"), "outputs/run", EvalOptions(num_samples=4))
    >>> report.result.reward_means, report.result.accuracy, report.result.pass_at_k
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from grpokit.config.schema import GrpokitOptions, RunConfig
from grpokit.config.yaml_file import read_yaml_file
from grpokit.data.messages import text_of
from grpokit.data.options import ROW_COLUMN
from grpokit.errors import DataError
from grpokit.formatting import fmt
from grpokit.model.generation import GenerationSettings
from grpokit.model.loading import load_model_for_inference
from grpokit.outputs.files import CONFIG_FILE, EVAL_DIR, EVAL_FILE, EVAL_SAMPLES_FILE, atomic_write_text
from grpokit.pipeline import build_reward_set, generate_for_rows, generation_settings, load_split_rows
from grpokit.rewards.agent import AgentSetup, resolve_agent
from grpokit.rewards.match import answer_block, normalize_text, numbers_in, parse_number
from grpokit.rewards.reward_set import RewardSet, run_rewards_on_rows

logger = logging.getLogger("grpokit.evaluate")


@dataclass(frozen=True)
class EvalOptions:
    """What `grpokit eval` adds to the config."""

    split: Literal["train", "test"] = "test"
    num_samples: int = 1  # completions per prompt: 1 is greedy; more are sampled (pass@k)
    max_rows: int | None = None  # evaluate only the first N rows
    reference_column: str = "answer"  # for task accuracy, when the rows have it
    batch_size: int = 32  # prompts per generate() call


@dataclass
class EvalResult:
    """One model's scores. `samples`: one dict per completion (row, sample, prompt, completion, scores...)."""

    model: str
    split: str
    num_rows: int
    num_samples: int
    num_completions: int
    reward_means: dict[str, float | None]  # per reward: mean of its non-None scores
    total_mean: float | None  # mean weighted total
    accuracy: float | None  # share of completions whose answer matches the reference (None: no reference)
    pass_at_k: float | None  # share of rows with at least one matching completion among their samples
    reference_column: str | None
    samples: list[dict[str, Any]] = field(repr=False, default_factory=list)

    def summary(self) -> dict[str, Any]:
        """What eval.json holds for this model (the samples go to eval_samples.jsonl)."""
        summary = {key: value for key, value in asdict(self).items() if key != "samples"}
        summary[f"pass@{self.num_samples}"] = summary.pop("pass_at_k")
        return summary


@dataclass
class EvalReport:
    result: EvalResult
    base: EvalResult | None  # with --compare
    eval_path: Path
    samples_path: Path

    def differences(self) -> dict[str, float | None]:
        """model - base, per reward, for the total and for accuracy (None where either side has none)."""
        if self.base is None:
            return {}
        pairs = {name: (mean, self.base.reward_means.get(name)) for name, mean in self.result.reward_means.items()}
        pairs["total"] = (self.result.total_mean, self.base.total_mean)
        pairs["accuracy"] = (self.result.accuracy, self.base.accuracy)
        pairs[f"pass@{self.result.num_samples}"] = (self.result.pass_at_k, self.base.pass_at_k)
        return {name: None if a is None or b is None else a - b for name, (a, b) in pairs.items()}


# ----------------------------------------------------------------------------- the recipe


def run_eval(
    config: RunConfig,
    model: str,
    options: EvalOptions = EvalOptions(),
    *,
    output_dir: str | Path | None = None,
    compare: str | None = None,
) -> EvalReport:
    """Generate and score completions of `model` (and `compare`) on a split; write eval.json and samples.

    `output_dir` defaults to `<model>/eval` for a local model directory, else `<output_dir>/eval`.

    Raises:
        GrpokitError: bad config, missing split, a model that cannot load, or a reward with
            `on_error: raise` failing.
    """
    reward_set = build_reward_set(config)
    rows = load_split_rows(config, reward_set, options.split, options.max_rows)
    settings = generation_settings(config, num_samples=options.num_samples, batch_size=options.batch_size)
    agent = resolve_agent(config)  # with tools or an environment, completions come from TRL's tool loop
    result = evaluate_model(config, model, reward_set, rows, settings, options, agent=agent)
    base = evaluate_model(config, compare, reward_set, rows, settings, options, agent=agent) if compare else None
    directory = Path(output_dir) if output_dir is not None else default_output_dir(model, config)
    report = EvalReport(result, base, directory / EVAL_FILE, directory / EVAL_SAMPLES_FILE)
    write_report_files(report)
    return report


def evaluate_model(
    config: RunConfig,
    model_ref: str,
    reward_set: RewardSet,
    rows: list[dict],
    settings: GenerationSettings,
    options: EvalOptions,
    *,
    agent: AgentSetup | None = None,
) -> EvalResult:
    """Load `model_ref`, generate `settings.num_samples` completions per row (with the config's tools, as in
    training, when `agent` has them) and score them."""
    model, tokenizer = load_model_for_inference(model_ref, options_as_trained(model_ref, config.options))
    logger.info("generating %d x %d completions with %s", len(rows), settings.num_samples, model_ref)
    completions, completion_ids = generate_for_rows(config, agent, model, tokenizer, rows, settings)
    return score_completions(
        reward_set,
        rows,
        completions,
        completion_ids=completion_ids,
        model=model_ref,
        split=options.split,
        reference_column=options.reference_column,
    )


QUANTIZATION_KEYS = ("load_in_4bit", "load_in_8bit")


def options_as_trained(model_ref: str, grpokit_options: GrpokitOptions) -> GrpokitOptions:
    """`grpokit_options` with the quantization a run's output directory was trained with.

    A run's `grpokit_config.yaml` (in `model_ref`, a run's output directory) records whether its base
    model was loaded in 4 or 8 bits; an adapter trained on a quantized base is evaluated on that base
    quantized the same way, whatever the config given to `grpokit eval` says. Anything else (a
    checkpoint folder, a model id) keeps `grpokit_options`.

    Raises:
        ConfigError: the saved config cannot be read.
    """
    saved = Path(model_ref) / CONFIG_FILE
    if not saved.is_file():
        return grpokit_options
    trained = read_yaml_file(saved)
    update = {key: bool(trained[key]) for key in QUANTIZATION_KEYS if key in trained}
    changed = {key: value for key, value in update.items() if getattr(grpokit_options, key) != value}
    if changed:
        logger.info("%s was trained with %s (%s); loading it so", model_ref, ", ".join(f"{k}: {v}" for k, v in changed.items()), saved.name)
    return grpokit_options.model_copy(update=update)


def default_output_dir(model: str, config: RunConfig) -> Path:
    local = Path(model).expanduser()
    if local.is_dir():
        return local / EVAL_DIR
    return Path(config.options.output_dir) / EVAL_DIR


def write_report_files(report: EvalReport) -> None:
    """eval.json (the model's summary, plus `compare` with the base's and the differences) and the samples."""
    report.eval_path.parent.mkdir(parents=True, exist_ok=True)
    summary = report.result.summary()
    if report.base is not None:
        summary["compare"] = {"base": report.base.summary(), "difference": report.differences()}
    atomic_write_text(report.eval_path, json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    samples = [*report.result.samples, *(report.base.samples if report.base is not None else [])]
    atomic_write_text(
        report.samples_path, "".join(json.dumps(sample, ensure_ascii=False, default=str) + "\n" for sample in samples)
    )


# ----------------------------------------------------------------------------- scoring


def score_completions(
    reward_set: RewardSet,
    rows: list[dict],
    completions: list[list],
    *,
    completion_ids: list[list[list[int]]] | None = None,
    model: str = "",
    split: str = "",
    reference_column: str | None = "answer",
) -> EvalResult:
    """Score `completions[i]` (the samples of row i) with every reward; means, accuracy and pass@k.

    Accuracy needs `reference_column` in the rows: a completion is correct when `answer_matches`.
    Every row must have the same number of samples.

    Raises:
        DataError: rows and completion lists differ in number, or rows have different sample counts.
        RunError: a reward with `on_error: raise` failed.
    """
    if len(rows) != len(completions):
        raise DataError(f"{len(rows)} rows but completions for {len(completions)}")
    num_samples = len(completions[0]) if completions else 0
    if any(len(samples) != num_samples for samples in completions):
        raise DataError("every row needs the same number of completions")
    flat_rows = [row for row in rows for _ in range(num_samples)]
    flat_completions = [completion for samples in completions for completion in samples]
    flat_ids = None if completion_ids is None else [ids for samples in completion_ids for ids in samples]
    scored = run_rewards_on_rows(reward_set, flat_rows, flat_completions, completion_ids=flat_ids)
    has_reference = bool(rows) and reference_column is not None and reference_column in rows[0]
    samples = []
    for index, (row, completion, result) in enumerate(zip(flat_rows, flat_completions, scored, strict=True)):
        reference = row.get(reference_column) if has_reference else None
        correct = None if reference is None else answer_matches(text_of(completion), reference)
        samples.append(
            {
                "model": model,
                "row": row.get(ROW_COLUMN, index // max(num_samples, 1)),
                "sample": index % max(num_samples, 1),
                "prompt": row["prompt"],
                "completion": completion,
                "reference": reference,
                "scores": result["scores"],
                "total": result["total"],
                "correct": correct,
            }
        )
    return EvalResult(
        model=model,
        split=split,
        num_rows=len(rows),
        num_samples=num_samples,
        num_completions=len(samples),
        reward_means={name: _mean([s["scores"][name] for s in samples]) for name in reward_set.names},
        total_mean=_mean([s["total"] for s in samples]),
        accuracy=_mean([float(s["correct"]) for s in samples if s["correct"] is not None]),
        pass_at_k=_pass_at_k(samples, num_samples),
        reference_column=reference_column if has_reference else None,
        samples=samples,
    )


def answer_matches(text: str, reference: Any) -> bool:
    """Task accuracy: the completion's answer equals the reference.

    The answer is the last `<answer>...</answer>` block, else the whole text. A numeric reference is
    compared with the answer's last number (`math.isclose`, abs_tol 1e-6); any other reference with the
    answer as text, whitespace collapsed and case ignored.

    Example: reference "46": "46" -> True, "<think>..</think><answer>46</answer>" -> True, "45" -> False.
    """
    answer = answer_block(text, "answer")
    answer = text if answer is None else answer
    reference_number = parse_number(str(reference))
    if reference_number is not None:
        found = numbers_in(answer)
        value = parse_number(found[-1]) if found else None
        return value is not None and math.isclose(value, reference_number, rel_tol=0.0, abs_tol=1e-6)
    options = {"strip": True, "ignore_case": True, "collapse_whitespace": True}
    return normalize_text(answer, **options) == normalize_text(str(reference), **options)


def _mean(values: list[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return math.fsum(present) / len(present) if present else None


def _pass_at_k(samples: list[dict], num_samples: int) -> float | None:
    if not samples or samples[0]["correct"] is None:
        return None
    per_row = [samples[start : start + num_samples] for start in range(0, len(samples), num_samples)]
    return sum(any(s["correct"] for s in row) for row in per_row) / len(per_row)


def eval_table(report: EvalReport):
    """A rich Table: mean score per reward, the weighted total, accuracy and pass@k; with a base, both and the difference."""
    from rich.table import Table

    result, base = report.result, report.base
    title = f"eval on {result.split}: {result.num_rows} rows x {result.num_samples} sample(s)"
    table = Table(title=title)
    table.add_column("metric")
    table.add_column(result.model, justify="right")
    if base is not None:
        table.add_column(f"{base.model} (base)", justify="right")
        table.add_column("difference", justify="right")
    difference = report.differences()
    metrics = [(f"{name} (mean)", name, result.reward_means[name], base and base.reward_means.get(name)) for name in result.reward_means]
    metrics.append(("total (weighted)", "total", result.total_mean, base and base.total_mean))
    if result.accuracy is not None:
        metrics.append((f"accuracy ({result.reference_column})", "accuracy", result.accuracy, base and base.accuracy))
        if result.num_samples > 1:
            metrics.append((f"pass@{result.num_samples}", f"pass@{result.num_samples}", result.pass_at_k, base and base.pass_at_k))
    for label, key, value, base_value in metrics:
        cells = [fmt(value)]
        if base is not None:
            change = difference.get(key) if key else None
            cells += [fmt(base_value), "-" if change is None else f"{change:+.3f}"]
        table.add_row(label, *cells)
    return table
