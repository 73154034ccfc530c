"""Two-digit addition: "a+b=" -> str(a + b). Small enough for a 1 M parameter model on a CPU.

The 100 x 100 operand pairs (0..99) are split once, deterministically, into training pairs and
held-out pairs (`split_pairs`). The split is made on unordered pairs, so when 12+34 is held out,
34+12 is too: a model evaluated on `heldout_problems()` has never seen those sums in either order
when it was trained on `make_problems(...)`, whatever seed produced them.

Example:
    >>> problems = make_problems(3, seed=0)
    >>> problems[0].prompt, problems[0].answer
    ('49+97=', '146')
    >>> is_correct("146<|endoftext|>", "146")
    True
"""

from __future__ import annotations

import functools
import hashlib
import random
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from grpokit.data.messages import text_of
from grpokit.model.generation import GenerationSettings, generate_completions

if TYPE_CHECKING:
    from collections.abc import Sequence

    from transformers import PreTrainedModel, PreTrainedTokenizerBase

OPERAND_LOW = 0
OPERAND_HIGH = 99
# About one unordered operand pair in HELDOUT_ONE_IN is held out (~1,000 of the 10,000 ordered pairs).
HELDOUT_ONE_IN = 10
# Fixes the order of `heldout_problems()`, so `heldout_problems(50)` is a prefix of `heldout_problems(200)`.
HELDOUT_ORDER_SEED = 20240601

_LEADING_DIGITS = re.compile(r"\s*([0-9]+)")


@dataclass(frozen=True)
class AdditionProblem:
    """One problem. `prompt` ("12+34=") and `answer` ("46") are derived from the operands."""

    a: int
    b: int
    prompt: str = field(init=False)
    answer: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "prompt", f"{self.a}+{self.b}=")
        object.__setattr__(self, "answer", str(self.a + self.b))


@dataclass(frozen=True)
class PairSplit:
    """The 0..99 x 0..99 operand pairs, as (a, b) tuples in ascending order, split in two."""

    train: tuple[tuple[int, int], ...]
    heldout: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class AccuracyResult:
    """Greedy exact-match accuracy over some problems, with each decoded completion (same order)."""

    accuracy: float
    num_correct: int
    completions: list[str]


def is_heldout_pair(a: int, b: int) -> bool:
    """True when the pair (in either order) belongs to the held-out set.

    Decided by a stable hash of the unordered pair, so it never changes between Python versions
    or runs. Operands outside 0..99 are never held out.
    """
    if not (OPERAND_LOW <= a <= OPERAND_HIGH and OPERAND_LOW <= b <= OPERAND_HIGH):
        return False
    low, high = sorted((a, b))
    digest = hashlib.sha256(f"{low}+{high}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % HELDOUT_ONE_IN == 0


@functools.lru_cache(maxsize=1)
def split_pairs() -> PairSplit:
    """Split every (a, b) with a, b in 0..99 into training and held-out pairs; see `is_heldout_pair`."""
    train: list[tuple[int, int]] = []
    heldout: list[tuple[int, int]] = []
    for a in range(OPERAND_LOW, OPERAND_HIGH + 1):
        for b in range(OPERAND_LOW, OPERAND_HIGH + 1):
            (heldout if is_heldout_pair(a, b) else train).append((a, b))
    return PairSplit(train=tuple(train), heldout=tuple(heldout))


def make_problems(n: int, *, seed: int, low: int = 0, high: int = 99) -> list[AdditionProblem]:
    """`n` training problems with operands drawn uniformly from low..high, held-out pairs excluded.

    Draws are independent, so a problem can repeat. The same `seed` gives the same list.

    Raises:
        ValueError: `n` is negative, the range is empty or negative, or every pair in it is held out.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if not 0 <= low <= high:
        raise ValueError(f"need 0 <= low <= high, got low={low}, high={high}")
    operands = range(low, high + 1)
    if high <= OPERAND_HIGH and all(is_heldout_pair(a, b) for a in operands for b in operands):
        raise ValueError(f"every pair with operands in {low}..{high} is held out; widen the range")
    rng = random.Random(seed)
    problems: list[AdditionProblem] = []
    while len(problems) < n:
        a, b = rng.randint(low, high), rng.randint(low, high)
        if not is_heldout_pair(a, b):
            problems.append(AdditionProblem(a, b))
    return problems


def heldout_problems(n: int = 200) -> list[AdditionProblem]:
    """The first `n` held-out problems in a fixed shuffled order (no repeats; never in training).

    Raises:
        ValueError: `n` is larger than the number of held-out pairs (about 1,000).
    """
    pairs = list(split_pairs().heldout)
    if not 0 <= n <= len(pairs):
        raise ValueError(f"n must be in 0..{len(pairs)} (the number of held-out pairs), got {n}")
    random.Random(HELDOUT_ORDER_SEED).shuffle(pairs)
    return [AdditionProblem(a, b) for a, b in pairs[:n]]


def extract_answer(completion: str | list[dict[str, Any]]) -> str:
    """The ASCII digits at the start of the completion, after optional whitespace; "" if none.

    Example: "46<|endoftext|>" -> "46", " 46" -> "46", "46x" -> "46", "x46" -> "", "" -> "".
    """
    match = _LEADING_DIGITS.match(text_of(completion))
    return match.group(1) if match else ""


def is_correct(completion: str | list[dict[str, Any]], answer: str) -> bool:
    """True when the completion's leading number is exactly `answer` ("046" does not match "46")."""
    extracted = extract_answer(completion)
    return extracted != "" and extracted == answer


def greedy_accuracy(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    problems: Sequence[AdditionProblem],
    *,
    max_new_tokens: int = 5,
    batch_size: int = 128,
) -> AccuracyResult:
    """Greedy-decode each plain-text prompt (left-padded, batched) and score exact matches.

    The model's train/eval mode and the tokenizer's padding side are restored afterwards.

    Raises:
        ValueError: `problems` is empty, or the tokenizer has no pad token.
    """
    if not problems:
        raise ValueError("greedy_accuracy needs at least one problem")
    if tokenizer.pad_token_id is None:
        raise ValueError("the tokenizer has no pad token; set tokenizer.pad_token first")
    was_training = model.training
    model.eval()
    settings = GenerationSettings(max_new_tokens=max_new_tokens, batch_size=batch_size)  # greedy: 1 sample
    try:
        per_prompt, _ = generate_completions(model, tokenizer, [problem.prompt for problem in problems], settings)
    finally:
        model.train(was_training)
    completions = [samples[0] for samples in per_prompt]
    num_correct = sum(is_correct(text, problem.answer) for text, problem in zip(completions, problems))
    return AccuracyResult(
        accuracy=num_correct / len(problems), num_correct=num_correct, completions=completions
    )
