"""A completion as a conversation: assistant turns, the tool calls they made and the tools' results.

With tools, GRPOTrainer's completions are message lists (TRL 1.16):

    [{"role": "assistant", "content": "", "tool_calls": [{"type": "function",
                                                          "function": {"name": "multiply", "arguments": {"a": 347, "b": 129}}}]},
     {"role": "tool", "name": "multiply", "content": "44763"},
     {"role": "assistant", "content": "The answer is 44763."}]

`conversation_turns` reads that (or a plain string, or a single message) into `Turn`s, which the
report's and the compare view's templates draw as a conversation (every value escaped by Jinja);
`conversation_text` writes the same as plain lines for the terminal (`grpokit eval`) and the trackers'
completions tables:

    >>> print(conversation_text([
    ...     {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {"name": "multiply", "arguments": {"a": 3, "b": 4}}}]},
    ...     {"role": "tool", "name": "multiply", "content": "12"},
    ...     {"role": "assistant", "content": "The answer is 12."}]))
    assistant: [tool call] multiply(a=3, b=4)
    tool multiply: 12
    assistant: The answer is 12.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

MESSAGES_KEY = "messages"  # a completion record's chat messages, beside its `completion` text


@dataclass(frozen=True)
class ToolCall:
    """One call an assistant turn made: the tool's name and its arguments as `a=1, b="x"`."""

    name: str
    arguments: str

    @property
    def text(self) -> str:
        return f"{self.name}({self.arguments})"


@dataclass(frozen=True)
class Turn:
    """One message of a conversation. `name`: the tool a `tool` message answers for."""

    role: str
    text: str
    tool_calls: tuple[ToolCall, ...] = field(default_factory=tuple)
    name: str | None = None


def is_conversation(value: Any) -> bool:
    """True for a list of message dicts (a chat completion), False for a string or anything else."""
    return isinstance(value, list) and bool(value) and all(isinstance(item, Mapping) for item in value)


def has_tool_messages(value: Any) -> bool:
    """True when a chat completion made a tool call or holds a tool result."""
    return is_conversation(value) and any(item.get("tool_calls") or item.get("role") == "tool" for item in value)


def conversation_turns(completion: Any) -> list[Turn]:
    """The completion's turns: one `assistant` turn for a string, one per message for a message list.

    Unknown shapes are shown as their `str()` in one assistant turn: a report never fails on a record.
    """
    if isinstance(completion, Mapping):
        completion = [completion]
    if not is_conversation(completion):
        return [Turn("assistant", "" if completion is None else str(completion))]
    return [_turn(message) for message in completion]


def _turn(message: Mapping) -> Turn:
    calls = tuple(_tool_call(call) for call in message.get("tool_calls") or () if isinstance(call, Mapping))
    name = message.get("name")
    return Turn(str(message.get("role", "assistant")), _content_text(message.get("content")), calls, str(name) if name else None)


def _tool_call(call: Mapping) -> ToolCall:
    function = call.get("function") if isinstance(call.get("function"), Mapping) else call
    arguments = function.get("arguments", {})
    if isinstance(arguments, str):  # some templates keep the arguments as JSON text
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError:
            return ToolCall(str(function.get("name", "?")), arguments)
    if isinstance(arguments, Mapping):
        shown = ", ".join(f"{key}={json.dumps(value, ensure_ascii=False)}" for key, value in arguments.items())
    else:
        shown = json.dumps(arguments, ensure_ascii=False)
    return ToolCall(str(function.get("name", "?")), shown)


def _content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, list):  # [{"type": "text", "text": ...}, {"type": "image"}]
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, Mapping))
    return str(content)


def conversation_text(completion: Any) -> str:
    """The completion as plain lines: `role: text`, each tool call as `[tool call] name(args)`, a tool result as `tool name: result`."""
    if isinstance(completion, str):
        return completion
    lines = []
    for turn in conversation_turns(completion):
        label = f"{turn.role} {turn.name}" if turn.role == "tool" and turn.name else turn.role
        parts = [turn.text] if turn.text else []
        parts += [f"[tool call] {call.text}" for call in turn.tool_calls]
        lines.append(f"{label}: {' '.join(parts)}")
    return "\n".join(lines)
