"""Chat messages: the text of a completion, whether a string or a list of message dicts.

Prompts and completions come in two shapes, as TRL's GRPOTrainer passes them: plain strings, or for
conversational data lists of `{"role", "content"}` messages. Everything that reads a completion's text
(the rewards, the built-in addition task, generation, the commands) reads it through `text_of`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def text_of(completion: Any) -> str:
    """Reduce one completion to its text.

    A completion is a string (standard prompts) or, for conversational prompts, a list of message dicts
    `[{"role": "assistant", "content": ...}]`. A content is a string, None (a message with only tool
    calls) or a list of parts `{"type": "text", "text": ...}`; text parts are concatenated, other parts
    (images) ignored. With several messages (tool use), the assistant messages' texts are joined by
    newlines; tool results are not the model's text and are skipped. A single message dict is accepted.

    Raises:
        TypeError: the completion has none of these shapes.
    """
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Mapping):
        return _content_text(completion.get("content"))
    if isinstance(completion, list) and all(isinstance(message, Mapping) for message in completion):
        texts = [
            _content_text(message.get("content"))
            for message in completion
            if message.get("role", "assistant") == "assistant"
        ]
        return "\n".join(text for text in texts if text)
    raise TypeError(
        f"a completion must be a string or a list of message dicts, got {type(completion).__name__}"
    )


def _content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part["text"] for part in content if isinstance(part, Mapping) and part.get("type") == "text"
        )
    raise TypeError(f"a message content must be a string or a list of parts, got {type(content).__name__}")
