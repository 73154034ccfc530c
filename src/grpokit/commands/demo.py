"""`grpokit demo`: GRPO on the built-in tiny model teaches it 2-digit addition, and shows that it learned.

The recipe: write training problems (held-out pairs excluded) -> load the demo config -> train with
grpokit's own `train()`, plus a callback that measures greedy accuracy on a fixed held-out set every
few steps (step 0 included) -> write `summary.json` and the HTML report -> print a one-screen summary.

The demo's config is `DEMO_SETTINGS` below, which `examples/demo.yaml` mirrors (a test keeps the two
equal); `grpokit demo --config FILE` runs another one. Its hyperparameters are the ones measured to
work on 2 CPU cores: full fine-tuning, 64 completions per step (8 prompts x 8), learning rate 1e-4
decaying linearly to 0 over 120 steps, no KL term, temperature 1.0, the built-in `exact_match` reward.

Example:
    >>> result = run_demo("outputs/demo")
    >>> result.summary.accuracy_before, result.summary.accuracy_after   # (0.57, 0.87) with seed 0
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from grpokit.commands.demo_common import (
    fresh_output_dir,
    load_task_config,
    mean,
    write_summary,
)
from grpokit.formatting import fmt
from grpokit.outputs.files import (
    HELDOUT_COMPLETIONS_FILE,
    METRICS_FILE,
    atomic_write_text,
)
from grpokit.outputs.report import ACCURACY_KEY, ReportPaths, read_jsonl, series, write_report
from grpokit.tasks import addition

logger = logging.getLogger("grpokit.demo")

DEFAULT_OUTPUT_DIR = "outputs/demo"
TRAIN_DATA_FILE = "data/train.jsonl"  # inside the output directory
REWARD_WINDOW = 10  # steps averaged for reward_first_mean / reward_last_mean

# The demo's config; examples/demo.yaml holds the same keys and values.
DEMO_SETTINGS: dict[str, Any] = {
    "model_id": "builtin:tiny",
    "use_lora": False,
    "train_dataset_path": f"{DEFAULT_OUTPUT_DIR}/{TRAIN_DATA_FILE}",
    "output_dir": DEFAULT_OUTPUT_DIR,
    "resume": "never",
    "rewards": [{"name": "exact_match"}],
    "max_steps": 120,
    "per_device_train_batch_size": 64,
    "num_generations": 8,
    "max_completion_length": 5,
    "learning_rate": 1.0e-4,
    "lr_scheduler_type": "linear",
    "beta": 0.0,
    "temperature": 1.0,
    "seed": 0,
    "save_strategy": "no",
    "logging_steps": 1,
}


@dataclass(frozen=True)
class DemoOptions:
    """What the demo adds around the config: the problems and the held-out evaluation."""

    heldout_size: int = 200  # first N of `addition.heldout_problems()`, never trained on
    eval_every: int = 10  # held-out greedy evaluation every K steps (and at step 0 and the last step)
    train_problems: int = 2000  # training problems written to the dataset (120 steps x 8 prompts = 960 used)
    sample_completions: int = 8  # held-out completions recorded per evaluation for the report


@dataclass(frozen=True)
class HeldoutEval:
    """Greedy held-out accuracy at `step`, reached after `train_seconds` of GRPO (evaluations excluded)."""

    step: int
    accuracy: float
    train_seconds: float


@dataclass(frozen=True)
class DemoSummary:
    """What `summary.json` holds. `train_seconds`: the GRPO steps only (no model loading, no evaluation)."""

    accuracy_before: float
    accuracy_after: float
    accuracy_gain: float
    heldout_problems: int
    steps: int
    train_seconds: float
    heldout_eval_seconds: float
    total_seconds: float
    reward_first: float | None  # total reward of the first step
    reward_last: float | None  # total reward of the last step
    reward_first_mean: float | None  # mean over the first REWARD_WINDOW steps
    reward_last_mean: float | None  # mean over the last REWARD_WINDOW steps
    seed: int
    accuracy_curve: list[list[float]]  # [step, accuracy] per evaluation


@dataclass(frozen=True)
class DemoResult:
    summary: DemoSummary
    output_dir: Path
    report: ReportPaths
    summary_path: Path


class HeldoutAccuracyCallback(TrainerCallback):
    """Greedy accuracy on fixed held-out problems at step 0, every `every_steps` steps and at the last step.

    Each evaluation is added to the step's logs as `heldout_accuracy` (so metrics.jsonl records it when
    this callback runs before grpokit's metrics callback; step 0, which has no log, is appended to
    `metrics_path` directly; a last step that is not logged is evaluated at the end of training but not
    in metrics.jsonl), kept in `history`, and the first `sample_completions` problems' greedy
    completions are appended to `completions_path`. Time spent evaluating is summed in `eval_seconds`
    and left out of each evaluation's `train_seconds`. With `stop_at_accuracy`, training stops at the
    first evaluation that reaches it. Runs on the main process only (single-process runs).
    """

    def __init__(
        self,
        problems: Sequence[addition.AdditionProblem],
        *,
        every_steps: int,
        metrics_path: Path | None = None,
        completions_path: Path | None = None,
        sample_completions: int = 8,
        stop_at_accuracy: float | None = None,
    ) -> None:
        if every_steps < 1:
            raise ValueError(f"every_steps must be >= 1, got {every_steps}")
        self.problems = list(problems)
        self.every_steps = every_steps
        self.metrics_path = metrics_path
        self.completions_path = completions_path
        self.sample_completions = sample_completions
        self.stop_at_accuracy = stop_at_accuracy
        self.history: list[HeldoutEval] = []
        self.eval_seconds = 0.0
        self._started: float | None = None

    def on_train_begin(self, args, state, control, model=None, processing_class=None, **kwargs):
        if not state.is_world_process_zero:
            return
        self._started = time.perf_counter()
        accuracy = self._evaluate(state.global_step, model, processing_class)
        if self.metrics_path is not None and state.global_step == 0:
            self.metrics_path.parent.mkdir(parents=True, exist_ok=True)
            with self.metrics_path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps({"step": 0, ACCURACY_KEY: accuracy}) + "\n")

    def on_log(self, args, state, control, logs=None, model=None, processing_class=None, **kwargs):
        if not state.is_world_process_zero or logs is None or "train_runtime" in logs:
            return
        step = state.global_step
        if step % self.every_steps and step != state.max_steps:
            return
        if self.history and self.history[-1].step == step:
            return
        logs[ACCURACY_KEY] = self._evaluate(step, model, processing_class)
        if self.stop_at_accuracy is not None and logs[ACCURACY_KEY] >= self.stop_at_accuracy:
            control.should_training_stop = True

    def on_train_end(self, args, state, control, model=None, processing_class=None, **kwargs):
        # A run stopped early, or one that does not log its last step, still ends with an evaluation.
        if state.is_world_process_zero and self.history and self.history[-1].step != state.global_step:
            self._evaluate(state.global_step, model, processing_class)

    def _evaluate(self, step: int, model, tokenizer) -> float:
        started = time.perf_counter()
        train_seconds = started - (self._started or started) - self.eval_seconds
        result = addition.greedy_accuracy(model, tokenizer, self.problems)
        self.eval_seconds += time.perf_counter() - started
        self.history.append(HeldoutEval(step=step, accuracy=result.accuracy, train_seconds=train_seconds))
        if self.completions_path is not None:
            self._record_completions(step, result.completions)
        return result.accuracy

    def _record_completions(self, step: int, completions: list[str]) -> None:
        samples = zip(self.problems[: self.sample_completions], completions)
        with self.completions_path.open("a", encoding="utf-8") as handle:
            for problem, completion in samples:
                record = {
                    "step": step,
                    "prompt": problem.prompt,
                    "answer": problem.answer,
                    "completion": completion,
                    "reward": 1.0 if addition.is_correct(completion, problem.answer) else 0.0,
                }
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def write_training_problems(path: Path, count: int, *, seed: int) -> Path:
    """Write `count` training problems as JSON Lines rows `{"prompt": "12+34=", "answer": "46"}`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [{"prompt": p.prompt, "answer": p.answer} for p in addition.make_problems(count, seed=seed)]
    atomic_write_text(path, "".join(json.dumps(row) + "\n" for row in rows))
    return path


def load_demo_config(output_dir: Path, config_path: str | Path | None = None, overrides: Sequence[str] = ()):
    """The demo config (`DEMO_SETTINGS`, or `config_path`) writing to `output_dir`, then `overrides`."""
    return load_task_config(DEMO_SETTINGS, output_dir, config_path, overrides, train_data_file=TRAIN_DATA_FILE)


def run_demo(
    output_dir: str | Path = DEFAULT_OUTPUT_DIR,
    *,
    config_path: str | Path | None = None,
    overrides: Sequence[str] = (),
    options: DemoOptions = DemoOptions(),
    console=None,
) -> DemoResult:
    """Train the tiny model on addition, evaluate on held-out problems, write summary.json and report.html.

    Raises:
        GrpokitError: the config (or an override) is invalid, or training fails.
    """
    from grpokit.trainer import train

    started = time.perf_counter()
    output_dir = fresh_output_dir(output_dir)
    config = load_demo_config(output_dir, config_path, overrides)
    seed = config.grpo_config.seed  # TRL's default when the config sets none
    write_training_problems(output_dir / TRAIN_DATA_FILE, options.train_problems, seed=seed)
    heldout = HeldoutAccuracyCallback(
        addition.heldout_problems(options.heldout_size),
        every_steps=options.eval_every,
        metrics_path=output_dir / METRICS_FILE,
        completions_path=output_dir / HELDOUT_COMPLETIONS_FILE,
        sample_completions=options.sample_completions,
    )
    result = train(config, console=console, extra_callbacks=[heldout])
    summary = summarize(heldout, result, output_dir, seed=seed, total_seconds=time.perf_counter() - started)
    summary_path = write_summary(output_dir, summary)
    report = write_report(output_dir)
    return DemoResult(summary=summary, output_dir=output_dir, report=report, summary_path=summary_path)


def summarize(
    heldout: HeldoutAccuracyCallback, result, output_dir: Path, *, seed: int, total_seconds: float
) -> DemoSummary:
    """Accuracy before and after from the held-out evaluations; reward from metrics.jsonl."""
    rewards = [value for _, value in series(read_jsonl(output_dir / METRICS_FILE), "reward")]
    before, after = heldout.history[0], heldout.history[-1]
    return DemoSummary(
        accuracy_before=before.accuracy,
        accuracy_after=after.accuracy,
        accuracy_gain=after.accuracy - before.accuracy,
        heldout_problems=len(heldout.problems),
        steps=result.global_step,
        train_seconds=result.train_seconds - heldout.eval_seconds,
        heldout_eval_seconds=heldout.eval_seconds,
        total_seconds=total_seconds,
        reward_first=rewards[0] if rewards else None,
        reward_last=rewards[-1] if rewards else None,
        reward_first_mean=mean(rewards[:REWARD_WINDOW]),
        reward_last_mean=mean(rewards[-REWARD_WINDOW:]),
        seed=seed,
        accuracy_curve=[[entry.step, entry.accuracy] for entry in heldout.history],
    )


def summary_table(result: DemoResult):
    """The one-screen terminal summary: a rich Table."""
    from rich.table import Table

    summary = result.summary
    gain_style = "green" if summary.accuracy_gain > 0 else "red"
    table = Table(title="grpokit demo: GRPO on 2-digit addition, builtin:tiny", show_header=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    table.add_row(
        "held-out accuracy",
        f"{summary.accuracy_before:.3f} -> [bold]{summary.accuracy_after:.3f}[/] "
        f"([{gain_style}]{summary.accuracy_gain * 100:+.1f} points[/]; {summary.heldout_problems} problems, greedy)",
    )
    table.add_row(
        "reward",
        f"{fmt(summary.reward_first_mean)} -> {fmt(summary.reward_last_mean)} "
        f"(mean of the first / last {REWARD_WINDOW} steps)",
    )
    table.add_row(
        "GRPO training",
        f"{summary.steps} steps, {summary.train_seconds:.0f} s "
        f"(+{summary.heldout_eval_seconds:.0f} s evaluating; {summary.total_seconds:.0f} s in all)",
    )
    table.add_row("report", str(result.report.html))
    if result.report.plot is not None:
        table.add_row("curves", str(result.report.plot))
    table.add_row("summary", str(result.summary_path))
    table.add_row("model", f"{result.output_dir}/model.safetensors")
    return table
