"""Generating completions the way GRPOTrainer shapes them: batched, left-padded, greedy or sampled.

One implementation for `grpokit eval`, `grpokit rewards --generate` and the addition task's held-out
accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from grpokit.data.conversations import chat_template_flags


@dataclass(frozen=True)
class GenerationSettings:
    """How completions are generated: `num_samples` 1 is greedy decoding, more are sampled."""

    max_new_tokens: int
    num_samples: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int | None = None
    batch_size: int = 32
    seed: int = 0
    chat_template_kwargs: dict[str, Any] = field(default_factory=dict)


def generate_completions(
    model, tokenizer, prompts: list, settings: GenerationSettings
) -> tuple[list[list], list[list[list[int]]]]:
    """`settings.num_samples` completions per prompt, shaped as GRPOTrainer passes them to rewards.

    Text prompts get text completions; chat prompts (message lists) are rendered with the tokenizer's
    chat template and get `[{"role": "assistant", "content": text}]`. Token ids stop after the first
    EOS (kept, as TRL keeps it) and are returned per completion.

    Returns:
        (completions, completion_ids), each a list per prompt of `num_samples` entries.
    """
    import torch

    padding_side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # generation appends on the right, so prompts must end aligned
    completions: list[list] = []
    all_ids: list[list[list[int]]] = []
    # Sampling is seeded on a forked RNG: evaluating in the middle of training leaves its random stream alone.
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(settings.seed)
        try:
            for start in range(0, len(prompts), settings.batch_size):
                batch = prompts[start : start + settings.batch_size]
                texts, ids = _generate_batch(model, tokenizer, batch, settings)
                for i, prompt in enumerate(batch):
                    chunk = slice(i * settings.num_samples, (i + 1) * settings.num_samples)
                    completions.append([_as_completion(prompt, text) for text in texts[chunk]])
                    all_ids.append(ids[chunk])
        finally:
            tokenizer.padding_side = padding_side
    return completions, all_ids


def _generate_batch(model, tokenizer, prompts: list, settings: GenerationSettings) -> tuple[list[str], list[list[int]]]:
    import torch

    rendered = render_prompts(tokenizer, prompts, settings.chat_template_kwargs)
    inputs = tokenizer(rendered, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
    sampling = (
        {"do_sample": True, "temperature": settings.temperature, "top_p": settings.top_p, "top_k": settings.top_k}
        if settings.num_samples > 1
        else {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
    )
    with torch.inference_mode():
        output = model.generate(  # [B * K, P + new]
            **inputs,
            max_new_tokens=settings.max_new_tokens,
            num_return_sequences=settings.num_samples,
            pad_token_id=tokenizer.pad_token_id,
            **sampling,
        )
    new_ids = output[:, inputs["input_ids"].shape[1] :].tolist()  # [B * K, new]
    ids = [_until_eos(row, tokenizer.eos_token_id, tokenizer.pad_token_id) for row in new_ids]
    return tokenizer.batch_decode(ids, skip_special_tokens=True), ids


def render_prompts(tokenizer, prompts: list, chat_template_kwargs: dict[str, Any] | None = None) -> list[str]:
    """The text the model reads for each prompt: chat prompts through the chat template, text as it is."""
    return [
        tokenizer.apply_chat_template(p, tokenize=False, **chat_template_flags(p), **(chat_template_kwargs or {}))
        if isinstance(p, list)
        else p
        for p in prompts
    ]


def _until_eos(ids: list[int], eos_id: int | None, pad_id: int | None) -> list[int]:
    if eos_id is not None and eos_id in ids:
        return ids[: ids.index(eos_id) + 1]
    if pad_id is not None and pad_id != eos_id and pad_id in ids:
        return ids[: ids.index(pad_id)]
    return ids


def _as_completion(prompt: Any, text: str) -> Any:
    return [{"role": "assistant", "content": text}] if isinstance(prompt, list) else text


def completion_token_ids(tokenizer, completions: list) -> list[list[int]]:
    """Token ids of completions written as text, as TRL passes `completion_ids` to rewards (no special tokens)."""
    from grpokit.data.messages import text_of

    return [tokenizer(text_of(completion), add_special_tokens=False)["input_ids"] for completion in completions]
