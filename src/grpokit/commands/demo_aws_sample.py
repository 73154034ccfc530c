"""`grpokit demo --task aws-sample`: the AWS GRPO sample's own job, learning on a laptop.

The recipe: convert the sample's `args.yaml` (`SAMPLE_ARGS`) as `grpokit convert aws-sample` does
(TRL 0.17.0's defaults, QLoRA on a 4-bit NF4 base, LoRA on all linear layers, the sample's three
rewards: ROUGE-L precision, length, format) -> apply `DEMO_OVERRIDES`, each with its reason (the
sample's hyperparameters are tuned for 7B models on GPUs; the demo trains `builtin:tiny-chat`, 1 M
parameters, on 2 CPU cores) -> write the data in the sample's `dataset.json` layout (its system
prompt asking for `<think>` / `<answer>`, a user question, a one-sentence `answer`) from
`tasks.format_task`, held-out questions excluded -> measure the format reward and ROUGE-L precision
on held-out prompts (greedy, and sampled) -> train with grpokit's `train()` -> measure again ->
`summary.json`, `completions.jsonl` and the HTML report.

`examples/aws_sample/demo.yaml` is the resulting config (a test keeps it equal to `demo_settings()`);
`grpokit demo --task aws-sample --config FILE` trains another one on the same data.

Deterministic: seed 0 and one torch thread (`AwsDemoOptions.threads`) give the same figures on
every run; training time is reported as wall and CPU time, with the load average, since the wall
time depends on what else the machine runs.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from transformers import TrainerCallback

from grpokit.commands.demo_aws_sample_config import (
    DEFAULT_OUTPUT_DIR,
    TEST_DATA_DIR,
    TRAIN_DATA_DIR,
    data_placement,
    demo_settings,
)
from grpokit.commands.demo_common import fresh_output_dir, torch_threads, write_summary
from grpokit.outputs.files import (
    HELDOUT_COMPLETIONS_FILE,
    METRICS_FILE,
)
from grpokit.outputs.report import ReportPaths, write_report
from grpokit.tasks import format_task

logger = logging.getLogger("grpokit.demo")

FORMAT_KEY = "heldout_format"  # metrics.jsonl keys of the held-out figures (greedy)
ROUGE_KEY = "heldout_rouge_l_precision"

@dataclass(frozen=True)
class AwsDemoOptions:
    """What the demo adds around the config: the problems, the held-out measure and the thread count."""

    heldout_size: int = 64  # first N of `format_task.heldout_problems()`, never trained on
    samples: int = 4  # sampled completions per held-out prompt (besides the greedy one)
    sample_temperature: float = 1.0
    max_new_tokens: int = 64
    train_problems: int = 1000  # rows written to the training dataset.json
    sample_completions: int = 8  # held-out greedy completions recorded before and after for the report
    threads: int = 1  # torch threads: the figures depend on it; 1 is also the fastest for a 1 M model


@dataclass(frozen=True)
class HeldoutFigures:
    """The sample's format reward and ROUGE-L precision on held-out prompts at `step`, greedy and sampled."""

    step: int
    greedy_format: float
    greedy_rouge_l_precision: float
    sampled_format: float
    sampled_rouge_l_precision: float
    sampled_mean_length: float


class HeldoutFormatCallback(TrainerCallback):
    """Measures the held-out figures before the first step and after the last (`history`), adds the greedy
    ones to metrics.jsonl (step 0 directly, the last step through its logs) and records the first
    `sample_completions` greedy completions with their rewards in `completions_path`. Evaluation time
    (wall and CPU) is summed apart, so the training time excludes it. Main process only."""

    def __init__(self, problems, options: AwsDemoOptions, *, metrics_path: Path, completions_path: Path) -> None:
        self.problems = list(problems)
        self.options = options
        self.metrics_path = metrics_path
        self.completions_path = completions_path
        self.history: list[HeldoutFigures] = []
        self.eval_seconds = 0.0
        self.eval_cpu_seconds = 0.0

    def on_train_begin(self, args, state, control, model=None, processing_class=None, **kwargs):
        if not state.is_world_process_zero:
            return
        figures = self._evaluate(state.global_step, model, processing_class)
        self.metrics_path.parent.mkdir(parents=True, exist_ok=True)
        with self.metrics_path.open("a", encoding="utf-8") as handle:
            row = {"step": 0, FORMAT_KEY: figures.greedy_format, ROUGE_KEY: figures.greedy_rouge_l_precision}
            handle.write(json.dumps(row) + "\n")

    def on_log(self, args, state, control, logs=None, model=None, processing_class=None, **kwargs):
        if not state.is_world_process_zero or logs is None or "train_runtime" in logs:
            return
        if state.global_step != state.max_steps or self.history[-1].step == state.global_step:
            return
        figures = self._evaluate(state.global_step, model, processing_class)
        logs[FORMAT_KEY] = figures.greedy_format
        logs[ROUGE_KEY] = figures.greedy_rouge_l_precision

    def on_train_end(self, args, state, control, model=None, processing_class=None, **kwargs):
        if state.is_world_process_zero and self.history and self.history[-1].step != state.global_step:
            self._evaluate(state.global_step, model, processing_class)  # stopped early, or the last step not logged

    def _evaluate(self, step: int, model, tokenizer) -> HeldoutFigures:
        wall, cpu = time.perf_counter(), time.process_time()
        options = self.options
        greedy = format_task.measure_format(model, tokenizer, self.problems, max_new_tokens=options.max_new_tokens)
        sampled = format_task.measure_format(
            model, tokenizer, self.problems, num_samples=options.samples, temperature=options.sample_temperature,
            seed=0, max_new_tokens=options.max_new_tokens,
        )  # fmt: skip
        figures = HeldoutFigures(
            step, greedy.format_reward, greedy.rouge_l_precision, sampled.format_reward, sampled.rouge_l_precision, sampled.mean_length
        )
        self.history.append(figures)
        self._record_completions(step, [samples[0] for samples in greedy.completions[: options.sample_completions]])
        self.eval_seconds += time.perf_counter() - wall
        self.eval_cpu_seconds += time.process_time() - cpu
        logger.info(
            "held-out at step %d: format %.3f, ROUGE-L precision %.3f (greedy); format %.3f, ROUGE-L precision %.3f (sampled)",
            step, figures.greedy_format, figures.greedy_rouge_l_precision, figures.sampled_format, figures.sampled_rouge_l_precision,
        )  # fmt: skip
        return figures

    def _record_completions(self, step: int, completions: list[str]) -> None:
        problems = self.problems[: len(completions)]
        totals = sample_reward_totals(completions, [problem.answer for problem in problems])
        with self.completions_path.open("a", encoding="utf-8") as handle:
            for problem, completion, total in zip(problems, completions, totals):
                record = {"step": step, "prompt": problem.question, "answer": problem.answer, "completion": completion, "reward": total}
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def sample_reward_totals(completions: list[str], answers: list[str]) -> list[float]:
    """Each completion's total of the sample's three rewards (weight 1.0 each), as training scores it."""
    from grpokit.rewards.length import length_reward

    formats, precisions = format_task.score_completions(completions, answers)
    lengths = length_reward(target_length=512, penalize_longer=False, offset=1)([""] * len(completions), completions)
    return [f + p + n for f, p, n in zip(formats, precisions, lengths)]


@dataclass(frozen=True)
class AwsDemoSummary:
    """What `summary.json` holds: held-out figures before and after (greedy, then sampled), the run's size and times."""

    format_before: float
    format_after: float
    rouge_l_precision_before: float
    rouge_l_precision_after: float
    sampled_format_before: float
    sampled_format_after: float
    sampled_rouge_l_precision_before: float
    sampled_rouge_l_precision_after: float
    heldout_prompts: int
    samples_per_prompt: int  # the sampled figures' samples per held-out prompt, at sample_temperature
    sample_temperature: float
    steps: int
    train_seconds: float  # wall time of the GRPO steps (no loading, no held-out evaluation)
    train_cpu_seconds: float  # this process's CPU time over the same steps
    heldout_eval_seconds: float
    total_seconds: float
    load_average_start: float  # the machine's 1-minute load average before and after training: others' work
    load_average_end: float  # slows the wall time (2 cores: a load over 2 means waiting for a core)
    torch_threads: int
    seed: int


@dataclass(frozen=True)
class AwsDemoResult:
    summary: AwsDemoSummary
    output_dir: Path
    report: ReportPaths
    summary_path: Path


def write_demo_data(output_dir: Path, options: AwsDemoOptions, *, seed: int) -> None:
    """The training rows and the held-out rows, each as `<folder>/dataset.json` in the sample's layout."""
    format_task.write_dataset(output_dir / TRAIN_DATA_DIR, format_task.make_problems(options.train_problems, seed=seed))
    format_task.write_dataset(output_dir / TEST_DATA_DIR, format_task.heldout_problems(options.heldout_size))


def run_aws_sample_demo(
    output_dir: str | Path = DEFAULT_OUTPUT_DIR,
    *,
    config_path: str | Path | None = None,
    overrides: Sequence[str] = (),
    options: AwsDemoOptions = AwsDemoOptions(),
    console=None,
) -> AwsDemoResult:
    """Train builtin:tiny-chat on the AWS sample's task with its converted config; measure held-out before and after.

    Raises:
        GrpokitError: the config (or an override) is invalid, or training fails.
    """
    from grpokit.config.loading import load_config
    from grpokit.trainer import train

    started = time.perf_counter()
    output_dir = fresh_output_dir(output_dir)
    placement = [f"{key}={value}" for key, value in data_placement(output_dir).items()]
    if config_path is not None:
        config = load_config(config_path, [*placement, *overrides])
    else:
        config = load_config(data=demo_settings(output_dir), overrides=list(overrides))
    seed = config.grpo_config.seed
    write_demo_data(output_dir, options, seed=seed)
    heldout = HeldoutFormatCallback(
        format_task.heldout_problems(options.heldout_size),
        options,
        metrics_path=output_dir / METRICS_FILE,
        completions_path=output_dir / HELDOUT_COMPLETIONS_FILE,
    )
    with torch_threads(options.threads):
        load_before, cpu_started = os.getloadavg()[0], time.process_time()
        result = train(config, console=console, extra_callbacks=[heldout])
        cpu_seconds = time.process_time() - cpu_started
    before, after = heldout.history[0], heldout.history[-1]
    summary = AwsDemoSummary(
        format_before=before.greedy_format,
        format_after=after.greedy_format,
        rouge_l_precision_before=before.greedy_rouge_l_precision,
        rouge_l_precision_after=after.greedy_rouge_l_precision,
        sampled_format_before=before.sampled_format,
        sampled_format_after=after.sampled_format,
        sampled_rouge_l_precision_before=before.sampled_rouge_l_precision,
        sampled_rouge_l_precision_after=after.sampled_rouge_l_precision,
        heldout_prompts=len(heldout.problems),
        samples_per_prompt=options.samples,
        sample_temperature=options.sample_temperature,
        steps=result.global_step,
        train_seconds=result.train_seconds - heldout.eval_seconds,
        train_cpu_seconds=cpu_seconds - heldout.eval_cpu_seconds,
        heldout_eval_seconds=heldout.eval_seconds,
        total_seconds=time.perf_counter() - started,
        load_average_start=load_before,
        load_average_end=os.getloadavg()[0],
        torch_threads=options.threads,
        seed=seed,
    )
    summary_path = write_summary(output_dir, summary)
    report = write_report(output_dir)
    return AwsDemoResult(summary=summary, output_dir=output_dir, report=report, summary_path=summary_path)


def summary_table(result: AwsDemoResult):
    """The one-screen terminal summary: a rich Table."""
    from rich.table import Table

    s = result.summary
    table = Table(title="grpokit demo --task aws-sample: the AWS sample's config and rewards, builtin:tiny-chat", show_header=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    greedy = f"{s.heldout_prompts} held-out prompts, greedy"
    sampled = f"{s.heldout_prompts} x {s.samples_per_prompt} samples at temperature {s.sample_temperature}"
    table.add_row("format reward", f"{s.format_before:.3f} -> [bold]{s.format_after:.3f}[/] ({_points(s.format_before, s.format_after)}; {greedy})")
    table.add_row("ROUGE-L precision", f"{s.rouge_l_precision_before:.3f} -> [bold]{s.rouge_l_precision_after:.3f}[/] ({_points(s.rouge_l_precision_before, s.rouge_l_precision_after)}; {greedy})")
    table.add_row("format reward", f"{s.sampled_format_before:.3f} -> {s.sampled_format_after:.3f} ({sampled})")
    table.add_row("ROUGE-L precision", f"{s.sampled_rouge_l_precision_before:.3f} -> {s.sampled_rouge_l_precision_after:.3f} ({sampled})")
    table.add_row(
        "GRPO training",
        f"{s.steps} steps, {s.train_seconds:.0f} s wall, {s.train_cpu_seconds:.0f} s CPU ({s.torch_threads} thread; "
        f"load average {s.load_average_start:.1f} -> {s.load_average_end:.1f}) +{s.heldout_eval_seconds:.0f} s evaluating; {s.total_seconds:.0f} s in all",
    )
    table.add_row("report", str(result.report.html))
    table.add_row("summary", str(result.summary_path))
    table.add_row("model", f"{result.output_dir} (merged: the sample's merge_weights)")
    return table


def _points(before: float, after: float) -> str:
    style = "green" if after > before else "red"
    return f"[{style}]{(after - before) * 100:+.1f} points[/]"
