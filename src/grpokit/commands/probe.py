"""`grpokit probe`: before a job, what the config's model and rewards make of its prompts.

The recipe: load config -> rewards -> the training data (checked against the rewards) -> the model,
loaded as training loads it -> K sampled completions for each of the first N prompts, with the
training's sampling settings, timed -> every reward on every completion -> one timed forward and
backward pass of a training micro-batch -> the figures (`grpokit.commands.probe_figures`): per-prompt
mean reward and pass rate, the share of zero-spread groups, the share cut at max_completion_length,
token-length percentiles, generation tokens/s, peak memory, the projected time per step and for the
run -> `probe.json`, and with `--write-filtered` the dataset without the probed prompts whose samples
all got the same reward (for 0/1 rewards: the always-solved and never-solved prompts).

Example:
    >>> report = run_probe(load_config("run.yaml"), ProbeOptions(rows=32, samples=8))
    >>> report.figures.zero_spread_share, report.projection.step_seconds
"""

from __future__ import annotations

import io
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from grpokit.commands.probe_figures import (
    ProbeFigures,
    Projection,
    StepShape,
    next_steps,
    project_run,
    summarize_probe,
)
from grpokit.commands.probe_sampling import ProbeSamples, sample_completions
from grpokit.config.schema import RunConfig
from grpokit.data.options import ROW_COLUMN
from grpokit.data.readers import load_table
from grpokit.errors import ConfigError
from grpokit.formatting import duration
from grpokit.model.loading import load_model, load_tokenizer, model_context_length
from grpokit.outputs.files import PROBE_FILE, atomic_write_bytes, atomic_write_text
from grpokit.pipeline import (
    bound_run_prompts,
    build_reward_set,
    generate_for_rows,
    generation_settings,
    load_run_data,
)
from grpokit.rewards.agent import resolve_agent
from grpokit.rewards.reward_set import run_rewards_on_rows

logger = logging.getLogger("grpokit.probe")


DEFAULT_ROWS = 16  # x num_generations samples: about a minute on builtin:tiny on 2 CPU cores


@dataclass(frozen=True)
class ProbeOptions:
    """What `grpokit probe` adds to the config."""

    rows: int = DEFAULT_ROWS  # prompts probed: the first N rows of the training set
    samples: int | None = None  # completions per prompt; None: the config's num_generations (the group size)
    pass_threshold: float | None = None  # None: the sum of the positive reward weights (full marks)
    write_filtered: Path | None = None  # write the dataset without the probed zero-spread prompts here
    write_json: bool = True  # write probe.json (`validate --probe` only prints its line)


@dataclass
class ProbeReport:
    model: str
    dataset_rows: int
    figures: ProbeFigures
    projection: Projection
    dynamic_sampling: bool
    peak_memory_mb: float | None
    peak_memory_kind: str
    json_path: Path | None = None
    filtered_path: Path | None = None
    filtered_rows: int | None = None  # rows written to filtered_path
    samples: ProbeSamples | None = None  # the completions behind the figures (not written to probe.json)
    next_steps: list[str] = field(default_factory=list)  # what to change when groups are mostly flat or cut


def run_probe(config: RunConfig, options: ProbeOptions, *, json_path: Path | None = None) -> ProbeReport:
    """Sample, score and time the config's first `options.rows` prompts; write probe.json (and the filtered data).

    Raises:
        ConfigError: rows or samples below 1, or samples 1 (a group needs two completions to differ).
        DataError: the data lacks a column a reward reads.
        RunError: a reward with `on_error: raise` failed.
    """
    args = config.grpo_config
    samples = options.samples if options.samples is not None else args.num_generations
    if options.rows < 1 or samples < 2:
        raise ConfigError(
            f"--rows must be at least 1 and --samples at least 2, got {options.rows} and {samples}",
            fix="a group needs two completions or more for its rewards to differ",
        )
    reward_set = build_reward_set(config)
    agent = resolve_agent(config)
    tokenizer = load_tokenizer(config.options)
    data, _ = bound_run_prompts(  # the prompts as training sees them (max_prompt_length, truncate_prompts, tools)
        config, load_run_data(config, reward_set), tokenizer, model_context=model_context_length(config.options),
        tools=agent.all_tools(),
    )
    if data.train is None:
        raise ConfigError(
            "probe samples dataset rows, and this config has none (its environment makes the tasks)",
            where=config.source,
            fix="give train_dataset_path a few rows for the environment's reset() to probe with",
        )
    rows = [data.train[i] for i in range(min(options.rows, len(data.train)))]
    logger.info("loading %s", config.options.model_id)
    model = _load_model(config)
    prompts_per_call = max(args.per_device_train_batch_size * args.steps_per_generation // args.num_generations, 1)
    settings = generation_settings(config, num_samples=samples, batch_size=prompts_per_call)
    logger.info("sampling %d prompts x %d completions (max_completion_length %d)", len(rows), samples, settings.max_new_tokens)
    sampled = sample_completions(
        model, tokenizer, rows, settings, lambda batch, s: generate_for_rows(config, agent, model, tokenizer, batch, s)
    )
    flat_rows = [row for row, per_row in zip(rows, sampled.completions) for _ in per_row]
    scored = run_rewards_on_rows(
        reward_set,
        flat_rows,
        [completion for per_row in sampled.completions for completion in per_row],
        completion_ids=[ids for per_row in sampled.completion_ids for ids in per_row],
    )
    totals = [[entry["total"] for entry in scored[i * samples : (i + 1) * samples]] for i in range(len(rows))]
    threshold = options.pass_threshold
    if threshold is None:
        threshold = sum(weight for weight in reward_set.weights if weight > 0)
    eos = tokenizer.eos_token_id
    figures = summarize_probe(
        rows=[row.get(ROW_COLUMN, i) for i, row in enumerate(rows)],
        prompts=[row["prompt"] for row in rows],
        totals=totals,
        completion_lengths=[[len(ids) for ids in per_row] for per_row in sampled.completion_ids],
        truncated=[[len(ids) >= settings.max_new_tokens and ids[-1:] != [eos] for ids in per_row] for per_row in sampled.completion_ids],
        prompt_lengths=[len(ids) for ids in sampled.prompt_ids],
        pass_threshold=threshold,
        generation_seconds=sampled.generation_seconds,
    )
    logger.info("timing one training micro-batch (forward and backward)")
    train_seconds, forward_seconds = time_training_micro_batch(model, config, sampled, args)
    dynamic = config.options.dynamic_sampling
    projection = project_run(
        step_shape(args),
        seconds_per_completion=sampled.generation_seconds / max(figures.completions, 1),
        micro_batch_train_seconds=train_seconds,
        micro_batch_forward_seconds=forward_seconds,
        dataset_rows=len(data.train),
        zero_spread_share=figures.zero_spread_share,
        dynamic_sampling_rounds=dynamic.max_rounds if dynamic.enabled else None,
    )
    report = ProbeReport(
        model=config.options.model_id,
        dataset_rows=len(data.train),
        figures=figures,
        projection=projection,
        dynamic_sampling=dynamic.enabled,
        peak_memory_mb=sampled.peak_memory_mb,
        peak_memory_kind=sampled.peak_memory_kind,
        samples=sampled,
        next_steps=next_steps(
            figures, temperature=settings.temperature, max_completion_length=settings.max_new_tokens, dynamic_sampling=dynamic.enabled
        ),
    )
    if options.write_filtered is not None:
        report.filtered_path = options.write_filtered
        report.filtered_rows = write_filtered_dataset(config, figures, options.write_filtered)
    if options.write_json:
        report.json_path = write_probe_json(report, json_path or Path(config.options.output_dir) / PROBE_FILE)
    return report


def _load_model(config: RunConfig):
    """The model as training loads it (dtype, attention, 4-bit), for generation."""
    import torch

    options = config.options
    model = load_model(options, gradient_checkpointing=False)
    if torch.cuda.is_available() and not options.load_in_4bit:  # 4-bit models are placed when loaded
        model = model.to("cuda")
    return model.eval()


def time_training_micro_batch(model, config: RunConfig, sampled: ProbeSamples, args) -> tuple[float, float]:
    """Seconds of one forward + backward pass, and of one forward pass, over a training micro-batch of probed sequences.

    The micro-batch is `per_device_train_batch_size` prompt + completion sequences, right-padded; the
    loss is their mean completion log-probability, as GRPO's loss reads it. LoRA adapters are added
    first when the config trains them, and gradient checkpointing is on when it is configured, so the
    backward pass costs what training's does. Gradients are dropped afterwards.
    """
    import torch

    model = _as_trained(model, config, args)
    pairs = [
        (prompt_ids, completion_ids)
        for prompt_ids, per_row in zip(sampled.prompt_ids, sampled.completion_ids)
        for completion_ids in per_row
    ][: args.per_device_train_batch_size]
    sequences = [prompt_ids + completion_ids for prompt_ids, completion_ids in pairs]
    width = max(len(sequence) for sequence in sequences)
    input_ids = torch.tensor([seq + [0] * (width - len(seq)) for seq in sequences], device=model.device)  # [B, T]
    attention = torch.tensor([[1] * len(seq) + [0] * (width - len(seq)) for seq in sequences], device=model.device)
    loss_mask = torch.zeros_like(attention)  # [B, T]: 1 on completion tokens
    for i, (prompt_ids, completion_ids) in enumerate(pairs):
        loss_mask[i, len(prompt_ids) : len(prompt_ids) + len(completion_ids)] = 1

    def mean_logprob() -> torch.Tensor:
        logits = model(input_ids=input_ids, attention_mask=attention).logits[:, :-1]  # [B, T-1, V]
        logps = torch.log_softmax(logits.float(), dim=-1).gather(-1, input_ids[:, 1:, None]).squeeze(-1)  # [B, T-1]
        mask = loss_mask[:, 1:]
        return (logps * mask).sum() / mask.sum().clamp(min=1)

    model.train()
    train_seconds = _timed(lambda: mean_logprob().backward(), model.device)
    model.zero_grad(set_to_none=True)
    model.eval()
    with torch.no_grad():
        forward_seconds = _timed(mean_logprob, model.device)
    return train_seconds, forward_seconds


def _as_trained(model, config: RunConfig, args):
    from grpokit.model.loading import lora_config

    if args.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=args.gradient_checkpointing_kwargs or {"use_reentrant": False})
    peft = lora_config(config.options)
    if peft is None:
        return model
    from peft import get_peft_model

    return get_peft_model(model, peft)


def _timed(work, device) -> float:
    import torch

    work()  # warm-up: the first backward allocates
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    work()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started


def step_shape(args) -> StepShape:
    """One optimizer step's batch arithmetic on one process, from TRL's resolved GRPOConfig."""
    generate_every = args.steps_per_generation * args.num_iterations
    needs_old_logps = args.gradient_accumulation_steps % generate_every != 0 or (
        args.use_vllm and args.vllm_importance_sampling_correction
    )
    return StepShape(
        per_device_batch=args.per_device_train_batch_size,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        steps_per_generation=args.steps_per_generation,
        num_iterations=args.num_iterations,
        extra_forwards_per_row=int(args.beta != 0.0) + int(needs_old_logps),
        max_steps=args.max_steps,
        num_train_epochs=args.num_train_epochs,
        generation_batch_prompts=args.generation_batch_size // args.num_generations,
    )


def write_filtered_dataset(config: RunConfig, figures: ProbeFigures, path: Path) -> int:
    """The training file without the probed rows whose samples all got one total; rows not probed are kept.

    Written as JSON Lines, or CSV / Parquet by the path's extension. Returns the rows written.
    """
    options = config.options
    source = load_table(options.train_dataset_path, fmt=options.dataset.format, what="train dataset")
    removed = {figure.row for figure in figures.prompts if figure.verdict != "informative"}
    kept = source.select([index for index in range(len(source)) if index not in removed])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        buffer = io.BytesIO()
        kept.to_parquet(buffer)
        atomic_write_bytes(path, buffer.getvalue())
    elif path.suffix == ".csv":
        buffer = io.BytesIO()
        kept.to_csv(buffer, index=False)
        atomic_write_bytes(path, buffer.getvalue())
    else:
        atomic_write_text(path, "".join(json.dumps(row, ensure_ascii=False, default=str) + "\n" for row in kept))
    return len(kept)


def write_probe_json(report: ProbeReport, path: Path) -> Path:
    """`probe.json`: every figure, the projection and the per-prompt figures."""
    payload: dict[str, Any] = {
        "model": report.model,
        "dataset_rows": report.dataset_rows,
        "dynamic_sampling": report.dynamic_sampling,
        "peak_memory_mb": report.peak_memory_mb,
        "peak_memory_kind": report.peak_memory_kind,
        "projection": asdict(report.projection),
        **{key: value for key, value in asdict(report.figures).items() if key != "prompts"},
        "prompts": [asdict(figure) for figure in report.figures.prompts],
        "filtered_path": str(report.filtered_path) if report.filtered_path else None,
        "filtered_rows": report.filtered_rows,
        "next_steps": report.next_steps,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(path, json.dumps(payload, indent=2, ensure_ascii=False, default=str) + "\n")


def projection_line(report: ProbeReport) -> str:
    """One line: zero-spread share, cut completions, projected step and run time."""
    figures, projection = report.figures, report.projection
    with_ds = f", dynamic sampling x{projection.generation_factor:.2f} generation" if report.dynamic_sampling else ""
    return (
        f"probe: {len(figures.prompts)} prompts x {figures.samples_per_prompt} samples: "
        f"{figures.zero_spread_share:.0%} of groups with zero reward spread, "
        f"{figures.truncated_share:.0%} of completions cut at max_completion_length; projected "
        f"{projection.step_seconds:.2f} s/step, {duration(projection.run_seconds)} for {projection.steps} steps "
        f"(one process{with_ds})"
    )


def probe_tables(report: ProbeReport, *, prompts_shown: int = 10) -> list:
    """Rich tables: the summary, then the first `prompts_shown` prompts."""
    from rich.table import Table

    from grpokit.formatting import fmt
    from grpokit.rewards.common import shorten

    figures, projection = report.figures, report.projection
    summary = Table(title=f"probe: {report.model}, {len(figures.prompts)} prompts x {figures.samples_per_prompt} samples", show_header=False)
    summary.add_column(style="bold", no_wrap=True)
    summary.add_column()
    counts = figures.verdict_counts
    summary.add_row("reward", f"mean {fmt(figures.mean_reward)}; pass rate {fmt(figures.mean_pass_rate)} (total >= {figures.pass_threshold:g})")
    summary.add_row(
        "zero-spread groups",
        f"{figures.zero_spread_share:.1%}: always solved {counts['always solved']}, never solved {counts['never solved']}"
        + (f", unscored {counts['unscored']}" if counts["unscored"] else ""),
    )
    summary.add_row("cut at max_completion_length", f"{figures.truncated_share:.1%} of {figures.completions} completions")
    for label, lengths in (("prompt tokens", figures.prompt_tokens), ("completion tokens", figures.completion_tokens)):
        summary.add_row(label, ", ".join(f"{key} {value if isinstance(value, int) else fmt(value)}" for key, value in lengths.items()))
    summary.add_row("generation", f"{fmt(figures.tokens_per_second, 1)} tokens/s ({figures.generated_tokens} tokens in {figures.generation_seconds:.1f} s)")
    summary.add_row("peak memory", f"{fmt(report.peak_memory_mb, 0)} MB ({report.peak_memory_kind})")
    summary.add_row(
        "projected step",
        f"{projection.step_seconds:.3f} s (generation {projection.generation_seconds_per_step:.3f} s, "
        f"forward/backward {projection.training_seconds_per_step:.3f} s; one process)",
    )
    summary.add_row("projected run", f"{duration(projection.run_seconds)} for {projection.steps} steps of {report.dataset_rows} rows")
    if report.filtered_path is not None:
        summary.add_row("filtered data", f"{report.filtered_rows} rows written to {report.filtered_path}")
    if report.json_path is not None:
        summary.add_row("figures", str(report.json_path))
    per_prompt = Table(title=f"first {min(prompts_shown, len(figures.prompts))} prompts")
    for column in ("row", "prompt", "mean reward", "pass rate", "spread", "verdict"):
        per_prompt.add_column(column, justify="left" if column in ("prompt", "verdict") else "right")
    for figure in figures.prompts[:prompts_shown]:
        prompt = figure.prompt if isinstance(figure.prompt, str) else str(figure.prompt[-1].get("content", ""))
        per_prompt.add_row(
            str(figure.row), shorten(prompt, 40), fmt(figure.mean_reward), fmt(figure.pass_rate), fmt(figure.spread), figure.verdict
        )
    return [summary, per_prompt]
