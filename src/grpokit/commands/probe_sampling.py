"""The probe's sampling: K completions for each probed prompt, timed, with progress and the time left.

`sample_completions` warms the model up, then generates one batch of prompts at a time
(`generate_with_progress`), logging the completions done and the time left every few seconds, and
measures the generation's time and peak memory. `grpokit.commands.probe` scores and summarizes them.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass

from grpokit.formatting import duration
from grpokit.model.generation import GenerationSettings, generate_completions, render_prompts

logger = logging.getLogger("grpokit.probe")

PROGRESS_SECONDS = 5.0  # at most one progress line this often while generating


@dataclass(frozen=True)
class ProbeSamples:
    """What the model produced for the probed rows, and what it cost."""

    rows: list[dict]
    completions: list[list]  # per row, `samples` completions
    completion_ids: list[list[list[int]]]
    prompt_ids: list[list[int]]  # tokens of each rendered prompt
    generation_seconds: float
    peak_memory_mb: float | None
    peak_memory_kind: str  # "cuda allocated" or "process RSS"



def sample_completions(model, tokenizer, rows: list[dict], settings: GenerationSettings, generate_rows=None) -> ProbeSamples:
    """K completions per row, timed after one untimed warm-up call; peak memory of the generation.

    `generate_rows(rows, settings) -> (completions, ids)`: how completions are generated (the pipeline's
    `generate_for_rows`, TRL's tool loop when the config has tools); None: plain generation.
    """
    import torch

    prompts = [row["prompt"] for row in rows]
    rendered = render_prompts(tokenizer, prompts, settings.chat_template_kwargs)
    prompt_ids = tokenizer(rendered, add_special_tokens=False)["input_ids"]
    warm_up = GenerationSettings(max_new_tokens=min(settings.max_new_tokens, 4), num_samples=2, batch_size=1)
    generate_completions(model, tokenizer, prompts[:1], warm_up)  # first-call costs (kernels, caches) are not generation speed
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    generate = generate_rows or (lambda batch, s: generate_completions(model, tokenizer, [row["prompt"] for row in batch], s))
    completions, ids = generate_with_progress(generate, rows, settings)
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    peak, kind = (torch.cuda.max_memory_allocated() / 2**20, "cuda allocated") if cuda else (_peak_rss_mb(), "process RSS")
    return ProbeSamples(rows, completions, ids, prompt_ids, seconds, peak, kind)


def generate_with_progress(generate, rows: list[dict], settings: GenerationSettings) -> tuple[list[list], list[list[list[int]]]]:
    """`generate(rows, settings)` one batch of rows at a time, logging the completions done and the time left."""
    completions: list[list] = []
    ids: list[list[list[int]]] = []
    started = last_line = time.perf_counter()
    total = len(rows) * settings.num_samples
    for index, start in enumerate(range(0, len(rows), settings.batch_size)):
        batch = GenerationSettings(**{**asdict(settings), "seed": settings.seed + index})  # each batch its own draw
        texts, batch_ids = generate(rows[start : start + settings.batch_size], batch)
        completions += texts
        ids += batch_ids
        now = time.perf_counter()
        done = len(completions) * settings.num_samples
        if now - last_line >= PROGRESS_SECONDS or done == total:
            last_line = now
            left = (now - started) / done * (total - done)
            logger.info("%d/%d completions (%.0f%%), %s elapsed, about %s left", done, total, 100 * done / total, duration(now - started), duration(left))
    return completions, ids


def _peak_rss_mb() -> float | None:
    try:
        import resource
    except ImportError:  # not on Windows
        return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
