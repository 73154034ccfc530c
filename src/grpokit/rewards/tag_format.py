"""`format`: the completion is `<think>...</think>` then `<answer>...</answer>` and nothing else."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import Field, validate_call

from grpokit.errors import RewardConfigError
from grpokit.rewards.common import RewardFunc, text_of

TagName = Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_.-]*$")]


@validate_call
def format_reward(
    *,
    think_tag: TagName = "think",
    answer_tag: TagName = "answer",
    partial_credit: Annotated[float, Field(ge=0.0, le=0.5)] = 0.0,
    require_content: bool = True,
) -> RewardFunc:
    """1.0 when the whole completion is `<think>...</think>` followed by `<answer>...</answer>`.

    Whitespace is allowed before, between and after the two blocks; any other text outside them, a
    block out of order, or a tag of either name inside a block scores as not matching. With
    `require_content` (default) a block holding only whitespace does not count, so `<think></think>
    <answer></answer>` is no free 1.0.

    A completion that does not match scores `partial_credit` times the number of tag pairs it contains
    anywhere (0, 1 or 2): a well-formed `<think>...</think>` block counts 1, an `<answer>...</answer>`
    block 1. `partial_credit` is at most 0.5 so partial credit never exceeds a full match.

    Parameters:
        think_tag: name of the reasoning tag (letters, digits, `_ . -`).
        answer_tag: name of the answer tag.
        partial_credit: score per tag pair present when the whole format does not match (default 0.0).
        require_content: a block must contain non-whitespace text to count.

    Difference from the AWS GRPO sample's `format_reward_func`: it added `^<think>.*?</think>$` and
    `^<answer>.*?</answer>$`, each matched against the whole completion, so no completion could match
    both and a completion with both blocks scored 0.0.

    Example:
        >>> reward = format_reward(partial_credit=0.25)
        >>> reward(prompts=["Q"] * 3, completions=[
        ...     "<think>2+2 is 4</think>\\n<answer>4</answer>", "<answer>4</answer>", "4"])
        [1.0, 0.25, 0.0]
    """
    if think_tag == answer_tag:
        raise RewardConfigError(
            f'reward "format": think_tag and answer_tag are both "{think_tag}"',
            fix="give the two tags different names",
        )
    return TagFormat(think_tag, answer_tag, partial_credit, require_content)


class TagFormat:
    """The `format` reward. A class, not a closure, so TRL can pickle it into worker processes."""

    __name__ = "format"
    required_columns: frozenset[str] = frozenset()

    def __init__(self, think_tag: str, answer_tag: str, partial_credit: float, require_content: bool) -> None:
        any_tag = f"</?(?:{re.escape(think_tag)}|{re.escape(answer_tag)})>"
        inner = f"((?:(?!{any_tag}).)*)"  # block content: anything but another tag of either name
        think = f"<{re.escape(think_tag)}>{inner}</{re.escape(think_tag)}>"
        answer = f"<{re.escape(answer_tag)}>{inner}</{re.escape(answer_tag)}>"
        self.whole = re.compile(rf"\s*{think}\s*{answer}\s*", re.DOTALL)
        self.blocks = (re.compile(think, re.DOTALL), re.compile(answer, re.DOTALL))
        self.partial_credit = partial_credit
        self.require_content = require_content

    def __call__(self, prompts: list, completions: list, **kwargs: Any) -> list[float]:
        return [self.score_text(text_of(completion)) for completion in completions]

    def score_text(self, text: str) -> float:
        whole = self.whole.fullmatch(text)
        if whole and self._filled(whole.groups()):
            return 1.0
        blocks_present = sum(
            any(self._filled(match.groups()) for match in block.finditer(text)) for block in self.blocks
        )
        return self.partial_credit * blocks_present

    def _filled(self, contents: tuple[str, ...]) -> bool:
        return not self.require_content or all(content.strip() for content in contents)
