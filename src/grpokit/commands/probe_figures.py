"""The figures of `grpokit probe`, computed from sampled completions: pure functions, no model.

`summarize_probe` turns K scored completions per prompt into per-prompt mean reward, pass rate and
verdict, the share of zero-spread groups, the share cut at max_completion_length, token-length
percentiles and generation speed; `project_run` turns those plus measured step parts into a time per
optimizer step and for the whole run.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from grpokit.rewards.groups import group_spreads

PERCENTILES = (50, 90, 99)
VERDICTS = ("informative", "always solved", "never solved", "unscored")


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile: the smallest value with at least q% of the values at or below it.

    >>> percentile([3, 1, 2, 4], 50), percentile([3, 1, 2, 4], 90), percentile([], 50)
    (2, 4, None)
    """
    if not values:
        return None
    ordered = sorted(values)
    rank = max(math.ceil(q / 100 * len(ordered)), 1)
    return ordered[rank - 1]


def length_summary(values: Sequence[int]) -> dict[str, float | None]:
    """`{"p50", "p90", "p99", "max"}` of token counts."""
    summary: dict[str, float | None] = {f"p{q}": percentile(values, q) for q in PERCENTILES}
    summary["max"] = max(values) if values else None
    return summary


@dataclass(frozen=True)
class PromptFigures:
    """One probed prompt: its row in the data file, its K totals and what they say."""

    row: int
    prompt: Any
    totals: list[float | None]  # weighted total reward of each sample (None: no reward scored it)
    mean_reward: float | None
    pass_rate: float | None  # share of scored samples whose total reaches the pass threshold
    spread: float | None  # max - min of the totals
    verdict: str  # one of VERDICTS; every verdict but "informative" has zero spread


@dataclass
class ProbeFigures:
    """Everything the probe reports except the projection."""

    prompts: list[PromptFigures]
    samples_per_prompt: int
    pass_threshold: float
    zero_spread_share: float  # share of prompts whose samples all got the same total (a group GRPO learns nothing from)
    verdict_counts: dict[str, int]
    mean_reward: float | None
    mean_pass_rate: float | None
    truncated_share: float  # completions cut at max_completion_length (no end-of-sequence token)
    prompt_tokens: dict[str, float | None]
    completion_tokens: dict[str, float | None]
    completions: int
    generated_tokens: int
    generation_seconds: float
    tokens_per_second: float | None  # completion tokens generated per second


def summarize_probe(
    *,
    rows: Sequence[int],
    prompts: Sequence[Any],
    totals: Sequence[Sequence[float | None]],
    completion_lengths: Sequence[Sequence[int]],
    truncated: Sequence[Sequence[bool]],
    prompt_lengths: Sequence[int],
    pass_threshold: float,
    generation_seconds: float,
) -> ProbeFigures:
    """The probe's figures from K samples per prompt (every argument has one entry per prompt).

    Raises:
        ValueError: no prompts, or prompts with different numbers of samples.
    """
    if not totals:
        raise ValueError("the probe needs at least one prompt")
    samples = len(totals[0])
    if any(len(per_prompt) != samples for per_prompt in totals):
        raise ValueError("every prompt needs the same number of samples")
    figures = [
        _prompt_figures(row, prompt, list(per_prompt), pass_threshold)
        for row, prompt, per_prompt in zip(rows, prompts, totals, strict=True)
    ]
    counts = {verdict: sum(f.verdict == verdict for f in figures) for verdict in VERDICTS}
    lengths = [length for per_prompt in completion_lengths for length in per_prompt]
    generated = sum(lengths)
    return ProbeFigures(
        prompts=figures,
        samples_per_prompt=samples,
        pass_threshold=pass_threshold,
        zero_spread_share=(len(figures) - counts["informative"]) / len(figures),
        verdict_counts=counts,
        mean_reward=_mean([f.mean_reward for f in figures if f.mean_reward is not None]),
        mean_pass_rate=_mean([f.pass_rate for f in figures if f.pass_rate is not None]),
        truncated_share=sum(flag for per_prompt in truncated for flag in per_prompt) / max(len(lengths), 1),
        prompt_tokens=length_summary(list(prompt_lengths)),
        completion_tokens=length_summary(lengths),
        completions=len(lengths),
        generated_tokens=generated,
        generation_seconds=generation_seconds,
        tokens_per_second=generated / generation_seconds if generation_seconds > 0 else None,
    )


def _prompt_figures(row: int, prompt: Any, totals: list[float | None], pass_threshold: float) -> PromptFigures:
    scored = [total for total in totals if total is not None and not math.isnan(total)]
    spread = group_spreads(totals, len(totals))[0] if totals else None
    pass_rate = sum(total >= pass_threshold for total in scored) / len(scored) if scored else None
    if not scored:
        verdict = "unscored"
    elif spread is not None and spread > 1e-6:
        verdict = "informative"
    else:
        verdict = "always solved" if pass_rate == 1.0 else "never solved"
    return PromptFigures(
        row=row, prompt=prompt, totals=totals, mean_reward=_mean(scored), pass_rate=pass_rate, spread=spread, verdict=verdict
    )


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


@dataclass(frozen=True)
class StepShape:
    """The batch arithmetic of one optimizer step on one process, from TRL's resolved GRPOConfig."""

    per_device_batch: int
    gradient_accumulation_steps: int
    steps_per_generation: int
    num_iterations: int
    extra_forwards_per_row: int  # reference model (beta != 0) and old log-probs, each one forward pass per row
    max_steps: int
    num_train_epochs: float
    generation_batch_prompts: int  # prompts per generation batch over all processes
    world_size: int = 1

    @property
    def completions_per_step(self) -> float:
        """Completions generated per optimizer step on one process."""
        return self.per_device_batch * self.gradient_accumulation_steps / self.num_iterations

    def steps_for(self, dataset_rows: int) -> int:
        """Optimizer steps of the run: max_steps, or TRL's steps per epoch times the epochs."""
        if self.max_steps > 0:
            return self.max_steps
        # TRL's RepeatSampler drops the last incomplete generation batch; transformers rounds a partial
        # accumulation up to one more step.
        batches = (dataset_rows // max(self.generation_batch_prompts, 1)) * self.num_iterations * self.steps_per_generation
        updates_per_epoch = max(math.ceil(batches / self.gradient_accumulation_steps), 1)
        return max(math.ceil(updates_per_epoch * self.num_train_epochs), 1)


@dataclass(frozen=True)
class Projection:
    """Projected seconds per optimizer step (one process) and for the whole run."""

    generation_seconds_per_step: float
    training_seconds_per_step: float
    step_seconds: float
    steps: int
    run_seconds: float
    generation_factor: float  # expected generation per step relative to plain GRPO (dynamic sampling: above 1)


def project_run(
    shape: StepShape,
    *,
    seconds_per_completion: float,
    micro_batch_train_seconds: float,
    micro_batch_forward_seconds: float,
    dataset_rows: int,
    zero_spread_share: float,
    dynamic_sampling_rounds: int | None,
) -> Projection:
    """Time per step = generation + forward/backward of each micro-batch + extra forward passes.

    With dynamic sampling (`dynamic_sampling_rounds` = its max_rounds), a step generates about
    1 / (1 - zero_spread_share) times as many completions, at most max_rounds times, and the extra
    forward passes grow with them.
    """
    factor = 1.0
    if dynamic_sampling_rounds is not None:
        factor = dynamic_sampling_rounds if zero_spread_share >= 1 else min(1 / (1 - zero_spread_share), dynamic_sampling_rounds)
    completions = shape.completions_per_step * factor
    generation = completions * seconds_per_completion
    training = shape.gradient_accumulation_steps * micro_batch_train_seconds
    training += shape.extra_forwards_per_row * completions / shape.per_device_batch * micro_batch_forward_seconds
    steps = shape.steps_for(dataset_rows)
    step = generation + training
    return Projection(
        generation_seconds_per_step=generation,
        training_seconds_per_step=training,
        step_seconds=step,
        steps=steps,
        run_seconds=step * steps,
        generation_factor=factor,
    )


FLAT_SHARE = 0.5  # zero-spread groups above this share: most of the compute would teach nothing
CUT_SHARE = 0.3  # completions cut at the limit above this share: the rewards mostly score unfinished answers
LOW_TEMPERATURE = 0.7  # below this, one prompt's samples often come out the same


def next_steps(figures: ProbeFigures, *, temperature: float, max_completion_length: int, dynamic_sampling: bool) -> list[str]:
    """What to change before training, when the probed groups are mostly flat or cut; [] when they are not.

    >>> figures = summarize_probe(rows=[0, 1], prompts=["a", "b"], totals=[[0.0, 0.0], [0.0, 0.0]],
    ...     completion_lengths=[[4, 4], [4, 4]], truncated=[[True, True], [True, True]], prompt_lengths=[2, 2],
    ...     pass_threshold=1.0, generation_seconds=1.0)
    >>> [line.split(":")[0] for line in next_steps(figures, temperature=0.2, max_completion_length=4, dynamic_sampling=False)]
    ['max_completion_length', 'temperature', 'never solved', 'dynamic_sampling', 'filtering']
    """
    steps = []
    if figures.truncated_share >= CUT_SHARE:
        steps.append(
            f"max_completion_length: {figures.truncated_share:.0%} of completions were cut at {max_completion_length} tokens; "
            f"raise it (e.g. --set max_completion_length={max_completion_length * 2}) or reward shorter answers"
        )
    if figures.zero_spread_share < FLAT_SHARE:
        return steps
    counts = figures.verdict_counts
    if temperature < LOW_TEMPERATURE:
        steps.append(f"temperature: {temperature:g} makes one prompt's samples alike; try --set temperature=1.0")
    if counts["never solved"] >= counts["always solved"] and counts["never solved"]:
        steps.append(
            f"never solved: {counts['never solved']} of {len(figures.prompts)} prompts got no sample that passes (total >= "
            f"{figures.pass_threshold:g}); give the rewards partial credit, or start from prompts the model solves sometimes"
        )
    elif counts["always solved"]:
        steps.append(
            f"always solved: {counts['always solved']} of {len(figures.prompts)} prompts passed on every sample; use harder prompts"
        )
    if not dynamic_sampling:
        steps.append("dynamic_sampling: set dynamic_sampling: true to replace flat groups with new ones while training (docs/efficiency.md)")
    steps.append("filtering: --write-filtered PATH writes the data without the flat prompts; point train_dataset_path at it")
    return steps
