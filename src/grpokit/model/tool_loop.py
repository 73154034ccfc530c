"""Generating with tools outside training, token for token as GRPOTrainer's tool loop does (TRL 1.16).

GRPOTrainer renders the prompt with the tools' JSON schemas, generates, parses each completion with
`trl.chat_template_utils.parse_response`, calls the tools it asked for, and continues generating from
`prompt ids + completion ids + tool-result ids`, where the tool-result ids are the chat template's
rendering of the tool messages cut from a dummy conversation (`_gettool_suffix_ids`). This module
does the same with transformers' `generate()`, so held-out figures are measured on the sequences
training would see. It is used by `grpokit eval`, `rewards` and `probe` when a config has tools or an
environment, and by the tool task's `measure_tool_use`. `check_tool_template` makes, before any weights
load, the checks GRPOTrainer makes of the chat template when it is given tools.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from grpokit.errors import ConfigError

# What GRPOTrainer (TRL 1.16) requires of transformers: tools from 5.0.0, environment_factory from 5.2.0.
TOOLS_MIN_TRANSFORMERS = "5.0.0"
ENVIRONMENT_MIN_TRANSFORMERS = "5.2.0"
_TEMPLATE_FIX = (
    "set chat_template: to a template TRL ships that fits the model (e.g. chat_template: qwen2_5), or to a "
    "template file of your own; see docs/agents.md"
)


def check_tool_template(tokenizer, *, environment: bool, source: str) -> None:
    """The checks GRPOTrainer makes when given tools, made on `tokenizer` before any weights load.

    Raises:
        ConfigError: transformers is older than TRL needs for tools (5.0.0) or environments (5.2.0); the
            chat template cannot render a tool call and its result (TRL's `supports_tool_calling`); TRL
            cannot parse tool calls out of it (`add_response_schema`); or it does not keep prefixes and TRL
            has no prefix-preserving training version of it (`get_training_chat_template`). The fix names
            `chat_template:`.
    """
    import transformers
    from packaging.version import Version
    from trl.chat_template_utils import (
        add_response_schema,
        get_training_chat_template,
        is_chat_template_prefix_preserving,
        supports_tool_calling,
    )

    needed = ENVIRONMENT_MIN_TRANSFORMERS if environment else TOOLS_MIN_TRANSFORMERS
    if Version(transformers.__version__) < Version(needed):
        raise ConfigError(
            f"transformers {transformers.__version__} is installed; TRL's {'environments' if environment else 'tools'} "
            f"need transformers {needed} or newer",
            where=source,
            fix=f"pip install 'transformers>={needed}'",
        )
    where = f"{source}, the chat template of the model's tokenizer (key chat_template: to replace it)"
    if not supports_tool_calling(tokenizer):
        raise ConfigError(
            "the model's chat template cannot call tools: it does not render an assistant tool call and the tool's "
            "result (TRL's supports_tool_calling check)",
            where=where,
            fix=_TEMPLATE_FIX,
        )
    if getattr(tokenizer, "response_template", None) is None and getattr(tokenizer, "response_schema", None) is None:
        had_template = hasattr(tokenizer, "response_template")
        try:
            add_response_schema(tokenizer)
        except ValueError as error:
            raise ConfigError(
                f"TRL cannot parse tool calls from this chat template: {error}", where=where, fix=_TEMPLATE_FIX
            ) from None
        finally:
            if had_template:
                tokenizer.response_template = None
            elif hasattr(tokenizer, "response_template"):
                del tokenizer.response_template
    if not is_chat_template_prefix_preserving(tokenizer):
        try:
            get_training_chat_template(tokenizer)
        except ValueError as error:
            raise ConfigError(
                "the chat template does not keep prefixes (an earlier turn renders differently once a tool result "
                f"follows), which TRL's tool loop needs, and TRL has no training version of it: {error}",
                where=where,
                fix=_TEMPLATE_FIX,
            ) from None


@dataclass(frozen=True)
class ToolRollouts:
    """Per prompt, `num_samples` completions as message lists (assistant / tool / assistant ...)."""

    completions: list[list[list[dict[str, Any]]]]
    tool_calls: int
    tool_failures: int


def generate_with_tools(
    model,
    tokenizer,
    prompts: list[list[dict[str, Any]]],
    tools: list[Callable],
    *,
    num_samples: int = 1,
    temperature: float = 1.0,
    seed: int = 0,
    max_new_tokens: int = 64,
    max_tool_calling_iterations: int = 1,
    batch_size: int = 64,
    prepare_rollout: Callable[[int, int], tuple[list[dict[str, Any]], list[Callable]]] | None = None,
) -> ToolRollouts:
    """Roll out each chat prompt `num_samples` times with `tools` callable, as GRPOTrainer would.

    `prepare_rollout(prompt_index, sample_index) -> (prompt, tools)` gives one rollout its own prompt and
    tools (an environment instance per rollout, as TRL keeps them: its `reset` may add to the prompt and
    its methods are the rollout's tools); None: every rollout reads `prompts[i]` with `tools`.

    `num_samples` 1 decodes greedily; more sample at `temperature` (seeded on a forked RNG, so the
    caller's random stream is untouched). `max_new_tokens` bounds each completion as a whole, tool
    results included, as `max_completion_length` does in TRL. A tool that raises gives the model
    `{"error": "..."}` and counts as a failure, as in TRL. The model's train/eval mode and the
    tokenizer are left as they were.

    Raises:
        ValueError: the tokenizer's chat template is not one TRL can parse tool calls from.
    """
    import torch
    from trl.chat_template_utils import add_response_schema

    had_template = hasattr(tokenizer, "response_template")
    previous = getattr(tokenizer, "response_template", None)
    if previous is None:
        add_response_schema(tokenizer)  # raises ValueError for a template TRL does not know
    was_training = model.training
    model.eval()
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    try:
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            prepare = prepare_rollout or (lambda index, sample: (prompts[index], tools))
            planned = [prepare(index, sample) for index in range(len(prompts)) for sample in range(num_samples)]
            rollouts = [
                _roll_out(model, tokenizer, planned[start : start + batch_size], num_samples > 1, temperature,
                          max_new_tokens, max_tool_calling_iterations)
                for start in range(0, len(planned), batch_size)
            ]  # fmt: skip
    finally:
        model.train(was_training)
        if previous is None:
            if had_template:
                tokenizer.response_template = None
            else:
                del tokenizer.response_template
    flat = [completion for batch in rollouts for completion in batch.completions]
    return ToolRollouts(
        completions=[flat[start : start + num_samples] for start in range(0, len(flat), num_samples)],
        tool_calls=sum(batch.tool_calls for batch in rollouts),
        tool_failures=sum(batch.tool_failures for batch in rollouts),
    )


def _roll_out(model, tokenizer, planned, sample, temperature, max_new_tokens, max_iterations) -> ToolRollouts:
    """One batch of rollouts, each a (prompt, tools) pair; `completions` is flat, one message list per rollout."""
    from trl.chat_template_utils import parse_response

    prompt_ids = [
        tokenizer.apply_chat_template(prompt, tools=tools or None, add_generation_prompt=True, tokenize=True, return_dict=False)
        for prompt, tools in planned
    ]
    tools_of = [tools for _, tools in planned]
    completion_ids = _generate(model, tokenizer, prompt_ids, max_new_tokens, sample, temperature)
    completions = [
        [parse_response(tokenizer, ids, prefix=p, tools=tools)] for p, ids, tools in zip(prompt_ids, completion_ids, tools_of)
    ]
    pending = [i for i, completion in enumerate(completions) if completion[0].get("tool_calls")]
    calls = failures = 0
    for _ in range(max_iterations):
        if not pending:
            break
        continued_ids, added = [], []
        for i in pending:
            tool_dict = {tool.__name__: tool for tool in tools_of[i]}
            messages, made, failed = _call_tools(completions[i][-1]["tool_calls"], tool_dict)
            calls, failures = calls + made, failures + failed
            completions[i].extend(messages)
            added.append(len(messages))
            continued_ids.append(prompt_ids[i] + completion_ids[i] + tool_suffix_ids(tokenizer, messages))
        # As in TRL: a sample whose tool result would overflow the completion budget stops before it.
        fits = [len(ids) - len(prompt_ids[i]) <= max_new_tokens for i, ids in zip(pending, continued_ids)]
        for i, ok, count in zip(pending, fits, added):
            if not ok:
                del completions[i][-count:]
        pending = [i for i, ok in zip(pending, fits) if ok]
        continued_ids = [ids for ids, ok in zip(continued_ids, fits) if ok]
        budgets = [max_new_tokens - (len(ids) - len(prompt_ids[i])) for i, ids in zip(pending, continued_ids)]
        post_ids = _generate(model, tokenizer, continued_ids, max(budgets, default=0), sample, temperature)
        next_pending = []
        for i, ids, prefix, budget in zip(pending, post_ids, continued_ids, budgets):
            ids = ids[:budget]
            completion_ids[i] = prefix[len(prompt_ids[i]) :] + ids
            if ids:
                message = parse_response(tokenizer, ids, prefix=prefix, tools=tools_of[i])
                completions[i].append(message)
                if message.get("tool_calls"):
                    next_pending.append(i)
        pending = next_pending
    return ToolRollouts(completions=completions, tool_calls=calls, tool_failures=failures)


def _call_tools(tool_calls: list[dict], tool_dict: dict[str, Callable]) -> tuple[list[dict], int, int]:
    """Tool messages for one assistant turn's calls, as TRL builds them; (messages, calls, failures)."""
    messages, failures = [], 0
    for tool_call in tool_calls:
        function = tool_call.get("function", {})
        name = function.get("name", "unknown")
        try:
            if tool_call.get("type") != "function" or name not in tool_dict:
                raise ValueError(f"Tool {name} not found.")
            result = tool_dict[name](**function.get("arguments", {}))
            if inspect.isawaitable(result):  # an async tool: TRL awaits it on its event loop; here, on a fresh one
                result = asyncio.run(_awaited(result))
        except Exception as error:  # noqa: BLE001 -- a failing tool is told to the model and counted, as in TRL
            failures += 1
            result = {"error": str(error)}
        messages.append({"role": "tool", "name": name, "content": str(result)})
    return messages, len(tool_calls), failures


async def _awaited(awaitable):
    return await awaitable


def tool_suffix_ids(tokenizer, tool_messages: list[dict]) -> list[int]:
    """The template's ids for the tool messages and the next assistant header (TRL's `_gettool_suffix_ids`)."""
    dummy = [
        {"role": "user", "content": "dummy"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"type": "function", "function": {"name": tool_messages[0]["name"], "arguments": {}}}],
        },
    ]
    prefix = tokenizer.apply_chat_template(dummy, add_generation_prompt=False, tokenize=True, return_dict=False)
    full = tokenizer.apply_chat_template(
        dummy + tool_messages, add_generation_prompt=True, tokenize=True, return_dict=False
    )
    eos_positions = [i for i, token in enumerate(prefix) if token == tokenizer.eos_token_id]
    if eos_positions:
        prefix = prefix[: eos_positions[-1] + 1]
    if full[: len(prefix)] != prefix:
        raise ValueError("the chat template does not preserve prefixes; TRL's tool loop needs it to")
    return full[len(prefix) :]


def _generate(model, tokenizer, sequences: list[list[int]], max_new_tokens: int, sample: bool, temperature: float):
    """Left-padded batched generation; each result is cut after its first EOS (kept, as TRL keeps it)."""
    import torch

    if not sequences or max_new_tokens <= 0:
        return [[] for _ in sequences]
    width = max(len(ids) for ids in sequences)
    input_ids = torch.full((len(sequences), width), tokenizer.pad_token_id)  # [B, P]
    attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)  # [B, P]
    for row, ids in enumerate(sequences):
        input_ids[row, width - len(ids) :] = torch.tensor(ids)
        attention_mask[row, width - len(ids) :] = 1
    sampling = {"do_sample": True, "temperature": temperature, "top_p": 1.0, "top_k": 0} if sample else {"do_sample": False}
    eos_ids = _eos_ids(model, tokenizer)
    with torch.inference_mode():
        output = model.generate(  # [B, P + new]
            input_ids=input_ids.to(model.device),
            attention_mask=attention_mask.to(model.device),
            max_new_tokens=max_new_tokens,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=eos_ids,
            **sampling,
        )
    rows = output[:, width:].tolist()  # [B, new]
    cut = []
    for row in rows:
        ends = [k for k, token in enumerate(row) if token in eos_ids]
        cut.append(row[: ends[0] + 1] if ends else row)
    return cut


def _eos_ids(model, tokenizer) -> list[int]:
    """The tokenizer's EOS first, then the generation config's, as GRPOTrainer stops generation."""
    configured = model.generation_config.eos_token_id
    configured = [] if configured is None else [configured] if isinstance(configured, int) else list(configured)
    return configured if tokenizer.eos_token_id in configured else [tokenizer.eos_token_id, *configured]
