"""`grpokit demo --task tools`: GRPO teaches the built-in chat model to call its calculator tool, and shows it.

The task (`grpokit.tasks.tool_task`): "What is 347 * 129?" with a `multiply` tool in TRL's tool loop.
`builtin:tiny-chat` cannot multiply 3-digit numbers in its head; it calls the tool in about a third of
its answers and copies the result. GRPO with an exact-answer reward (the built-in `exact_match` on
the last number of the final answer) makes it call the tool every time.

The recipe: write training problems (held-out pairs excluded) -> load the demo config
(`TOOLS_DEMO_SETTINGS`, which `examples/demo_tools.yaml` mirrors: `tools:` names the calculator) ->
fix the torch thread count -> train with grpokit's own `train()`, plus a callback that runs the tool
loop greedily on fixed held-out problems at step 0, every few steps and at the end (exact-answer
accuracy and the share of answers that called the tool) -> `summary.json` and the HTML report, whose
sample completions show one held-out conversation before training and after it.

Same seed and thread count, same figures: GRPO's sampling is seeded, and the evaluations run on a
forked random stream. Measured with the shipped settings (seed 0, 1 thread): README.md, "The agent demo".

Example:
    >>> result = run_tools_demo("outputs/demo-tools")
    >>> result.summary.accuracy_before, result.summary.accuracy_after
"""

from __future__ import annotations

import json
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
    torch_threads,
    write_summary,
)
from grpokit.formatting import fmt
from grpokit.outputs.conversation import MESSAGES_KEY
from grpokit.outputs.files import HELDOUT_COMPLETIONS_FILE, METRICS_FILE, atomic_write_text
from grpokit.outputs.report import ACCURACY_KEY, ReportPaths, read_jsonl, series, write_report
from grpokit.outputs.tracking.callback import message_text
from grpokit.tasks import tool_task

DEFAULT_OUTPUT_DIR = "outputs/demo-tools"
TRAIN_DATA_FILE = "data/train.jsonl"  # inside the output directory
TOOL_CALL_RATE_KEY = "heldout_tool_call_rate"  # logged beside ACCURACY_KEY at each held-out evaluation
REWARD_WINDOW = 10  # steps averaged for reward_first_mean / reward_last_mean

# The demo's config; examples/demo_tools.yaml holds the same keys and values (a test keeps them equal).
TOOLS_DEMO_SETTINGS: dict[str, Any] = {
    "model_id": "builtin:tiny-chat",
    "use_lora": False,
    "train_dataset_path": f"{DEFAULT_OUTPUT_DIR}/{TRAIN_DATA_FILE}",
    "output_dir": DEFAULT_OUTPUT_DIR,
    "resume": "never",
    "tools": ["grpokit.tasks.tool_task:multiply"],
    "rewards": [{"name": "exact_match", "extract": "last_number"}],
    "max_steps": 30,
    "per_device_train_batch_size": 16,
    "num_generations": 8,
    "max_completion_length": 64,
    "max_tool_calling_iterations": 1,
    "learning_rate": 1.0e-4,
    "lr_scheduler_type": "constant",
    "beta": 0.0,
    "temperature": 1.0,
    "seed": 0,
    "save_strategy": "no",
    "logging_steps": 1,
}


@dataclass(frozen=True)
class ToolsDemoOptions:
    """What the demo adds around the config: the problems, the held-out evaluation, the thread count."""

    heldout_size: int = 100  # first N of `tool_task.heldout_problems()`, never trained on
    eval_every: int = 10  # held-out evaluation every K steps (and at step 0 and the last step)
    train_problems: int = 1000  # training problems written (30 steps x 2 prompts = 60 used)
    sample_completions: int = 2  # held-out conversations recorded per evaluation for the report
    threads: int = 1  # torch threads: the figures depend on it, so it is fixed


@dataclass(frozen=True)
class ToolUseEval:
    """Greedy held-out figures at `step`, after `train_seconds` of GRPO (evaluations excluded)."""

    step: int
    accuracy: float
    tool_call_rate: float
    train_seconds: float


@dataclass(frozen=True)
class ToolsDemoSummary:
    """What `summary.json` holds. `train_seconds` / `train_cpu_seconds`: the GRPO steps only, wall and CPU."""

    task: str
    accuracy_before: float
    accuracy_after: float
    accuracy_gain: float
    tool_call_rate_before: float
    tool_call_rate_after: float
    heldout_problems: int
    steps: int
    train_seconds: float
    train_cpu_seconds: float
    heldout_eval_seconds: float
    total_seconds: float
    threads: int
    reward_first_mean: float | None
    reward_last_mean: float | None
    seed: int
    accuracy_curve: list[list[float]]  # [step, accuracy, tool-call rate] per evaluation


@dataclass(frozen=True)
class ToolsDemoResult:
    summary: ToolsDemoSummary
    output_dir: Path
    report: ReportPaths
    summary_path: Path


class HeldoutToolUseCallback(TrainerCallback):
    """Greedy held-out accuracy and tool-call rate at step 0, every `every_steps` steps and at the end.

    Each evaluation is added to the step's log (`heldout_accuracy`, `heldout_tool_call_rate`); step 0,
    which has no log, is appended to `metrics_path`. The first `sample_completions` problems'
    conversations go to `completions_path` (`messages`: the message list). Evaluation time is kept out
    of `train_seconds` (wall) and `train_cpu_seconds` (this process's CPU). Single process.
    """

    def __init__(self, problems, *, every_steps: int, metrics_path: Path, completions_path: Path, sample_completions: int) -> None:
        if every_steps < 1:
            raise ValueError(f"every_steps must be >= 1, got {every_steps}")
        self.problems = list(problems)
        self.every_steps = every_steps
        self.metrics_path = metrics_path
        self.completions_path = completions_path
        self.sample_completions = sample_completions
        self.history: list[ToolUseEval] = []
        self.eval_seconds = self.eval_cpu_seconds = 0.0
        self._started = self._cpu_started = 0.0
        self.train_cpu_seconds = 0.0

    def on_train_begin(self, args, state, control, model=None, processing_class=None, **kwargs):
        self._started, self._cpu_started = time.perf_counter(), time.process_time()
        figures = self._evaluate(state.global_step, model, processing_class)
        self.metrics_path.parent.mkdir(parents=True, exist_ok=True)
        with self.metrics_path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps({"step": 0, **figures}) + "\n")

    def on_log(self, args, state, control, logs=None, model=None, processing_class=None, **kwargs):
        step = state.global_step
        if logs is None or "train_runtime" in logs or (step % self.every_steps and step != state.max_steps):
            return
        if not self.history or self.history[-1].step != step:
            logs.update(self._evaluate(step, model, processing_class))

    def on_train_end(self, args, state, control, model=None, processing_class=None, **kwargs):
        if self.history and self.history[-1].step != state.global_step:
            self._evaluate(state.global_step, model, processing_class)
        self.train_cpu_seconds = time.process_time() - self._cpu_started - self.eval_cpu_seconds

    def _evaluate(self, step: int, model, tokenizer) -> dict[str, float]:
        started, cpu_started = time.perf_counter(), time.process_time()
        result = tool_task.measure_tool_use(model, tokenizer, self.problems)
        self.history.append(ToolUseEval(step, result.accuracy, result.tool_call_rate, started - self._started - self.eval_seconds))
        self.eval_seconds += time.perf_counter() - started
        self.eval_cpu_seconds += time.process_time() - cpu_started
        self._record(step, [per_problem[0] for per_problem in result.completions])
        return {ACCURACY_KEY: result.accuracy, TOOL_CALL_RATE_KEY: result.tool_call_rate}

    def _record(self, step: int, completions: list[list[dict[str, Any]]]) -> None:
        with self.completions_path.open("a", encoding="utf-8") as handle:
            for problem, completion in zip(self.problems[: self.sample_completions], completions):
                record = {
                    "step": step,
                    "prompt": message_text(problem.prompt()),
                    "answer": problem.answer,
                    "completion": message_text(completion),
                    MESSAGES_KEY: completion,
                    "reward": 1.0 if tool_task.is_correct(completion, problem.answer) else 0.0,
                }
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def write_training_problems(path: Path, count: int, *, seed: int) -> Path:
    """Write `count` training problems as JSON Lines rows: `prompt` (chat messages), `question`, `answer`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [problem.row() for problem in tool_task.make_problems(count, seed=seed)]
    atomic_write_text(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    return path


def load_tools_demo_config(output_dir: Path, config_path: str | Path | None = None, overrides: Sequence[str] = ()):
    """The demo config (`TOOLS_DEMO_SETTINGS`, or `config_path`) writing to `output_dir`, then `overrides`."""
    return load_task_config(TOOLS_DEMO_SETTINGS, output_dir, config_path, overrides, train_data_file=TRAIN_DATA_FILE)


def run_tools_demo(
    output_dir: str | Path = DEFAULT_OUTPUT_DIR,
    *,
    config_path: str | Path | None = None,
    overrides: Sequence[str] = (),
    options: ToolsDemoOptions = ToolsDemoOptions(),
    console=None,
) -> ToolsDemoResult:
    """Train `builtin:tiny-chat` to use its calculator; evaluate held-out problems; write summary.json and the report.

    Sets torch's thread count to `options.threads` for the run (and restores it after).

    Raises:
        GrpokitError: the config (or an override) is invalid, or training fails.
    """
    from grpokit.trainer import train

    started = time.perf_counter()
    output_dir = fresh_output_dir(output_dir)
    config = load_tools_demo_config(output_dir, config_path, overrides)
    seed = config.grpo_config.seed
    write_training_problems(output_dir / TRAIN_DATA_FILE, options.train_problems, seed=seed)
    heldout = HeldoutToolUseCallback(
        tool_task.heldout_problems(options.heldout_size),
        every_steps=options.eval_every,
        metrics_path=output_dir / METRICS_FILE,
        completions_path=output_dir / HELDOUT_COMPLETIONS_FILE,
        sample_completions=options.sample_completions,
    )
    with torch_threads(options.threads):
        result = train(config, console=console, extra_callbacks=[heldout])
    summary = summarize(heldout, result, output_dir, seed=seed, threads=options.threads, total_seconds=time.perf_counter() - started)
    summary_path = write_summary(output_dir, summary)
    return ToolsDemoResult(summary=summary, output_dir=output_dir, report=write_report(output_dir), summary_path=summary_path)


def summarize(heldout: HeldoutToolUseCallback, result, output_dir: Path, *, seed: int, threads: int, total_seconds: float) -> ToolsDemoSummary:
    """Before and after from the held-out evaluations; the reward from metrics.jsonl."""
    rewards = [value for _, value in series(read_jsonl(output_dir / METRICS_FILE), "reward")]
    before, after = heldout.history[0], heldout.history[-1]
    return ToolsDemoSummary(
        task="tools",
        accuracy_before=before.accuracy,
        accuracy_after=after.accuracy,
        accuracy_gain=after.accuracy - before.accuracy,
        tool_call_rate_before=before.tool_call_rate,
        tool_call_rate_after=after.tool_call_rate,
        heldout_problems=len(heldout.problems),
        steps=result.global_step,
        train_seconds=result.train_seconds - heldout.eval_seconds,
        train_cpu_seconds=heldout.train_cpu_seconds,
        heldout_eval_seconds=heldout.eval_seconds,
        total_seconds=total_seconds,
        threads=threads,
        reward_first_mean=mean(rewards[:REWARD_WINDOW]),
        reward_last_mean=mean(rewards[-REWARD_WINDOW:]),
        seed=seed,
        accuracy_curve=[[entry.step, entry.accuracy, entry.tool_call_rate] for entry in heldout.history],
    )


def tools_summary_table(result: ToolsDemoResult):
    """The one-screen terminal summary: a rich Table."""
    from rich.table import Table

    summary = result.summary
    gain_style = "green" if summary.accuracy_gain > 0 else "red"
    table = Table(title="grpokit demo --task tools: GRPO teaches builtin:tiny-chat to call its calculator", show_header=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    table.add_row(
        "held-out accuracy",
        f"{summary.accuracy_before:.3f} -> [bold]{summary.accuracy_after:.3f}[/] "
        f"([{gain_style}]{summary.accuracy_gain * 100:+.1f} points[/]; {summary.heldout_problems} problems, greedy, exact answer)",
    )
    table.add_row("tool-call rate", f"{summary.tool_call_rate_before:.3f} -> [bold]{summary.tool_call_rate_after:.3f}[/] (share of answers that called multiply)")
    table.add_row("reward", f"{fmt(summary.reward_first_mean)} -> {fmt(summary.reward_last_mean)} (mean of the first / last {REWARD_WINDOW} steps)")
    table.add_row(
        "GRPO training",
        f"{summary.steps} steps, {summary.train_seconds:.0f} s wall, {summary.train_cpu_seconds:.0f} s CPU, {summary.threads} thread(s) "
        f"(+{summary.heldout_eval_seconds:.0f} s evaluating; {summary.total_seconds:.0f} s in all)",
    )
    table.add_row("report", str(result.report.html))
    table.add_row("summary", str(result.summary_path))
    table.add_row("model", f"{result.output_dir}/model.safetensors")
    return table
