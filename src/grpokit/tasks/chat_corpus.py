"""The warm-start corpus of `builtin:tiny-chat`: worked conversations of both tasks, as token ids.

Each example is tokenized exactly as GRPOTrainer lays out a rollout: the prompt rendered by the chat
template with a generation prompt, then the completion tokens; for a tool call, the tool result's
tokens are cut from the template as TRL's tool loop cuts them (`model.tool_loop.tool_suffix_ids`), then
the final answer. The loss covers only what the model writes (completions, each with its
`<|im_end|>`); prompts and tool results are masked.

The mixture sets how the warm-started model behaves before GRPO:
- tool task: `tool_share` of the examples call `multiply` and copy its result; the others answer
  directly with the right product, which a 1 M parameter model cannot learn, so its direct answers
  are mostly wrong;
- format task: `format_share` of the examples follow the requested `<think>`/`<answer>` format; the
  others wrap the reference sentence in pleasantries.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from grpokit.model.tool_loop import tool_suffix_ids
from grpokit.tasks import format_task, tool_task


@dataclass(frozen=True)
class Example:
    """One conversation as token ids, with the positions the loss covers."""

    input_ids: list[int]
    loss_mask: list[bool]  # True on tokens the model writes


def tool_example(tokenizer, problem: tool_task.MultiplicationProblem, *, use_tool: bool) -> Example:
    """The tool task's prompt, then a tool call + copied result (`use_tool`) or a direct answer."""
    tools = list(tool_task.TOOLS)
    prompt = problem.prompt()
    prompt_ids = _render(tokenizer, prompt, tools=tools, add_generation_prompt=True)
    answer_ids = _completion_ids(tokenizer, problem.answer)
    if not use_tool:
        return Example(prompt_ids + answer_ids, [False] * len(prompt_ids) + [True] * len(answer_ids))
    call, result, _ = problem.tool_call_messages()
    with_call = _render(tokenizer, [*prompt, call], tools=tools, add_generation_prompt=False)
    if with_call[: len(prompt_ids)] != prompt_ids:
        raise AssertionError("the chat template does not preserve the prompt before a tool call")
    call_ids = with_call[len(prompt_ids) :]
    call_ids = call_ids[: call_ids.index(tokenizer.eos_token_id) + 1]  # the completion ends at <|im_end|>
    suffix_ids = tool_suffix_ids(tokenizer, [result])
    ids = prompt_ids + call_ids + suffix_ids + answer_ids
    mask = [False] * len(prompt_ids) + [True] * len(call_ids) + [False] * len(suffix_ids) + [True] * len(answer_ids)
    return Example(ids, mask)


def format_example(tokenizer, problem: format_task.FormatProblem, *, formatted: bool, rng: random.Random) -> Example:
    """The AWS-sample task's prompt, then a formatted reply (`formatted`) or a chatty one."""
    prompt_ids = _render(tokenizer, problem.prompt(), tools=None, add_generation_prompt=True)
    reply = problem.formatted_response() if formatted else problem.chatty_response(rng)
    reply_ids = _completion_ids(tokenizer, reply)
    return Example(prompt_ids + reply_ids, [False] * len(prompt_ids) + [True] * len(reply_ids))


def corpus_texts(num_each: int, *, seed: int) -> list[str]:
    """Plain texts of worked conversations of both tasks, for training the tokenizer's merges.

    Rendered with TRL's Qwen2.5 template; the caller strips the special and added tokens.
    """
    from transformers.utils.chat_template_utils import render_jinja_template
    from trl.chat_template_utils import qwen2_5_chat_template

    def render(messages, tools):
        rendered, _ = render_jinja_template([messages], tools=tools, chat_template=qwen2_5_chat_template)
        return rendered[0]

    rng = random.Random(seed)
    texts = []
    for problem in tool_task.make_problems(num_each, seed=seed):
        texts.append(render(problem.prompt() + problem.tool_call_messages(), list(tool_task.TOOLS)))
    for problem in format_task.make_problems(num_each, seed=seed):
        reply = problem.formatted_response() if rng.random() < 0.5 else problem.chatty_response(rng)
        texts.append(render([*problem.prompt(), {"role": "assistant", "content": reply}], None))
    return texts


def batches(tokenizer, *, steps: int, batch_size: int, seed: int, shares):
    """Yield (task name, list of Examples) for `steps` steps: tool and format batches alternate.

    `shares(step)` gives (tool share, format share) for step 0, 1, ...: the share of tool examples
    that call the tool and of format examples that follow the format. Drawn from the tasks'
    training problems with a fixed seed, so the stream is the same every run.
    """
    rng = random.Random(seed)
    tool_problems = tool_task.make_problems(steps * batch_size // 2 + batch_size, seed=seed)
    format_problems = format_task.make_problems(steps * batch_size // 2 + batch_size, seed=seed + 1)
    for step in range(steps):
        tool_share, format_share = shares(step)
        start = (step // 2) * batch_size
        if step % 2 == 0:
            chunk = tool_problems[start : start + batch_size]
            yield "tool", [tool_example(tokenizer, p, use_tool=rng.random() < tool_share) for p in chunk]
        else:
            chunk = format_problems[start : start + batch_size]
            yield "format", [
                format_example(tokenizer, p, formatted=rng.random() < format_share, rng=rng) for p in chunk
            ]


def shared_prefix_length(examples: list[Example]) -> int:
    """How many leading tokens every example shares, stopping before the first token the loss covers.

    The tool task's prompts share the whole tool-schema system prompt (about 170 tokens), so the
    warm start runs it once per batch instead of once per example.
    """
    first = examples[0].input_ids
    length = min(len(example.input_ids) for example in examples)
    for example in examples:
        first_loss = example.loss_mask.index(True) if True in example.loss_mask else len(example.loss_mask)
        length = min(length, first_loss - 1)
        for i in range(length):
            if example.input_ids[i] != first[i]:
                length = i
                break
    return max(length, 0)


def _render(tokenizer, messages, *, tools, add_generation_prompt: bool) -> list[int]:
    return tokenizer.apply_chat_template(
        messages, tools=tools, add_generation_prompt=add_generation_prompt, tokenize=True, return_dict=False
    )


def _completion_ids(tokenizer, text: str) -> list[int]:
    return tokenizer.encode(text, add_special_tokens=False) + [tokenizer.eos_token_id]
