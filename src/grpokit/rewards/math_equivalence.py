"""`math_verify`: the completion's final answer is mathematically equal to the reference (math-verify)."""

from __future__ import annotations

import logging
import threading
from typing import Annotated, Any

from pydantic import Field, validate_call

from grpokit.rewards.common import RewardFunc, column_values, text_of
from grpokit.rewards.match import answer_block

logger = logging.getLogger("grpokit.rewards")


@validate_call
def math_verify_reward(
    *,
    reference_column: str = "answer",
    answer_tag: Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_.-]*$")] | None = None,
    timeout_seconds: Annotated[int, Field(ge=1)] = 5,
    float_rounding: Annotated[int, Field(ge=0)] = 6,
) -> RewardFunc:
    """1.0 when the completion's answer equals the reference as mathematics, checked by `math-verify`.

    Both sides go through `math_verify.parse` (LaTeX such as `\\frac{1}{2}` or `\\boxed{...}`, and plain
    expressions such as `1/2`), then `math_verify.verify(gold, answer)`: equal numbers, equal symbolic
    expressions, sets, intervals and matrices all count. A reference that math-verify cannot parse, or
    None, scores None (not applicable, as TRL's `accuracy_reward`); an empty completion or one without
    a parsable answer scores 0.0.

    Timeouts: math-verify interrupts a slow parse or comparison with `signal.alarm`, which Python allows
    in the main thread only (elsewhere it raises ValueError). In the main thread (GRPOTrainer calls
    rewards there) `timeout_seconds` applies to each parse and comparison, and a timeout scores 0.0.
    Called from another thread, the reward runs without those timeouts and logs a warning once; wrap it
    in the `isolated` reward (each worker process has its own main thread, and `isolated` adds a hard
    timeout) when it must never hang there.

    Parameters:
        reference_column: the dataset column holding the reference answer (LaTeX or plain).
        answer_tag: parse only the last `<answer_tag>...</answer_tag>` block (none found: 0.0).
            Default None: the whole completion, where math-verify looks for the last boxed or
            `$...$` answer itself.
        timeout_seconds: seconds for each parse and each comparison (whole seconds, signal.alarm's unit).
        float_rounding: decimal places floats are rounded to before comparing.

    Example:
        >>> reward = math_verify_reward()
        >>> reward(prompts=["Q"] * 3, completions=["So $\\\\boxed{\\\\frac{1}{2}}$", "$0.5$", "$\\\\frac{1}{3}$"],
        ...        answer=["$\\\\frac{1}{2}$"] * 3)
        [1.0, 1.0, 0.0]
    """
    import math_verify  # noqa: F401 -- fail at build time, not in the middle of training

    return MathVerify(reference_column, answer_tag, timeout_seconds, float_rounding)


class MathVerify:
    """The `math_verify` reward. A class, not a closure, so TRL can pickle it into worker processes."""

    __name__ = "math_verify"

    def __init__(
        self, reference_column: str, answer_tag: str | None, timeout_seconds: int, float_rounding: int
    ) -> None:
        self.reference_column = reference_column
        self.required_columns = frozenset({reference_column})
        self.answer_tag = answer_tag
        self.timeout_seconds = timeout_seconds
        self.float_rounding = float_rounding
        self.warned_off_main_thread = False

    def __call__(self, prompts: list, completions: list, **columns: Any) -> list[float | None]:
        references = column_values(columns, self.reference_column, self.__name__, len(completions))
        timeout = self.usable_timeout()
        return [
            None if reference is None else self.score_text(text_of(completion), str(reference), timeout)
            for completion, reference in zip(completions, references, strict=True)
        ]

    def usable_timeout(self) -> int | None:
        if threading.current_thread() is threading.main_thread():
            return self.timeout_seconds
        if not self.warned_off_main_thread:
            self.warned_off_main_thread = True
            logger.warning(
                'reward "math_verify" runs outside the main thread, where math-verify\'s signal-based '
                "timeouts cannot work: running without them. Wrap it in the `isolated` reward for a hard timeout."
            )
            # math-verify warns on every call without a timeout; once is enough, and said above.
            logging.getLogger("math_verify").setLevel(logging.ERROR)
        return None

    def score_text(self, text: str, reference: str, timeout: int | None) -> float | None:
        from math_verify import parse, verify

        gold = parse(reference, parsing_timeout=timeout)
        if not gold:
            return None
        if self.answer_tag is not None:
            text = answer_block(text, self.answer_tag) or ""
        if not text.strip():
            return 0.0
        answer = parse(text, parsing_timeout=timeout)
        if not answer:
            return 0.0
        return float(verify(gold, answer, float_rounding=self.float_rounding, timeout_seconds=timeout))
