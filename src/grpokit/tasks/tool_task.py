"""Three-digit multiplication with a calculator tool: the task of the tools demo on `builtin:tiny-chat`.

A chat prompt asks for the product of two numbers in 100..999 ("What is 347 * 129?"). The model
may answer in its head (a 1 M parameter model is almost always wrong) or call the `multiply` tool
in TRL's tool loop and copy the result into its final answer. The reference answer is the product,
as digits ("44763"); the model's final answer is a sentence ending in it ("The answer is 44763.").

The 900 x 900 operand pairs are split once, deterministically, on unordered pairs (`is_heldout_pair`):
a model trained on `make_problems(...)` has never seen a held-out product in either order.

Example:
    >>> problem = make_problems(1, seed=0)[0]
    >>> problem.question, problem.answer
    ('What is 964 times 494?', '476216')
    >>> is_correct([{"role": "assistant", "content": "The answer is 476216."}], problem.answer)
    True
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grpokit.data.messages import text_of
from grpokit.tasks import rows

OPERAND_LOW = 100
OPERAND_HIGH = 999
# About one unordered operand pair in HELDOUT_ONE_IN is held out.
HELDOUT_ONE_IN = 10
# Fixes the order of `heldout_problems()`, so `heldout_problems(50)` is a prefix of `heldout_problems(200)`.
HELDOUT_ORDER_SEED = 20261207
SYSTEM_PROMPT = "You are a helpful assistant."
QUESTION_TEMPLATES = (
    "What is {a} * {b}?",
    "Compute {a} times {b}.",
    "Multiply {a} by {b}.",
    "What is {a} times {b}?",
)

ANSWER_TEMPLATE = "The answer is {answer}."
_INTEGER = re.compile(r"-?[0-9]+")


def multiply(a: int, b: int) -> int:
    """Multiply two integers.

    Args:
        a: The first number.
        b: The second number.
    """
    return a * b


TOOLS = (multiply,)


@dataclass(frozen=True)
class MultiplicationProblem:
    """One problem: `question` is `QUESTION_TEMPLATES[phrasing]` filled in; `answer` is the product."""

    a: int
    b: int
    phrasing: int = 0

    @property
    def question(self) -> str:
        return QUESTION_TEMPLATES[self.phrasing].format(a=self.a, b=self.b)

    @property
    def answer(self) -> str:
        return str(self.a * self.b)

    @property
    def final_answer(self) -> str:
        """What a worked reply says last: `ANSWER_TEMPLATE` with the product."""
        return ANSWER_TEMPLATE.format(answer=self.answer)

    def prompt(self) -> list[dict[str, str]]:
        """The chat prompt: the system message, then the question."""
        return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": self.question}]

    def row(self) -> dict[str, Any]:
        """A dataset row: `prompt` (chat messages), `question` and the reference `answer`."""
        return {"prompt": self.prompt(), "question": self.question, "answer": self.answer}

    def tool_call_messages(self) -> list[dict[str, Any]]:
        """A worked exchange after the prompt: the tool call, its result, the answer copied from it."""
        call = {"type": "function", "function": {"name": "multiply", "arguments": {"a": self.a, "b": self.b}}}
        return [
            {"role": "assistant", "content": "", "tool_calls": [call]},
            {"role": "tool", "name": "multiply", "content": self.answer},
            {"role": "assistant", "content": self.final_answer},
        ]

    def direct_messages(self) -> list[dict[str, Any]]:
        """A worked exchange after the prompt that answers without the tool."""
        return [{"role": "assistant", "content": self.final_answer}]


@dataclass(frozen=True)
class ToolUseResult:
    """Held-out figures over all samples: exact-answer accuracy, the share of samples that called a
    tool, tool failures per call, and the completions (message lists, one list per problem)."""

    accuracy: float
    tool_call_rate: float
    tool_failure_rate: float
    num_samples: int
    completions: list[list[list[dict[str, Any]]]]


def is_heldout_pair(a: int, b: int) -> bool:
    """True when the pair (in either order) is held out; decided by a stable hash of the sorted pair."""
    if not (OPERAND_LOW <= a <= OPERAND_HIGH and OPERAND_LOW <= b <= OPERAND_HIGH):
        return False
    low, high = sorted((a, b))
    digest = hashlib.sha256(f"{low}*{high}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % HELDOUT_ONE_IN == 0


def make_problems(n: int, *, seed: int) -> list[MultiplicationProblem]:
    """`n` training problems (operands and phrasing drawn uniformly), held-out pairs excluded.

    The same `seed` gives the same list; problems can repeat.

    Raises:
        ValueError: `n` is negative.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng = random.Random(seed)
    problems: list[MultiplicationProblem] = []
    while len(problems) < n:
        a, b = rng.randint(OPERAND_LOW, OPERAND_HIGH), rng.randint(OPERAND_LOW, OPERAND_HIGH)
        phrasing = rng.randrange(len(QUESTION_TEMPLATES))
        if not is_heldout_pair(a, b):
            problems.append(MultiplicationProblem(a, b, phrasing))
    return problems


def heldout_problems(n: int = 200) -> list[MultiplicationProblem]:
    """The first `n` held-out problems in a fixed order, no pair twice (never in training).

    Raises:
        ValueError: `n` is negative or larger than 5,000.
    """
    if not 0 <= n <= 5000:
        raise ValueError(f"n must be in 0..5000, got {n}")
    rng = random.Random(HELDOUT_ORDER_SEED)
    seen: set[tuple[int, int]] = set()
    problems: list[MultiplicationProblem] = []
    while len(problems) < n:
        a, b = rng.randint(OPERAND_LOW, OPERAND_HIGH), rng.randint(OPERAND_LOW, OPERAND_HIGH)
        phrasing = rng.randrange(len(QUESTION_TEMPLATES))
        if is_heldout_pair(a, b) and (a, b) not in seen:
            seen.add((a, b))
            problems.append(MultiplicationProblem(a, b, phrasing))
    return problems


def final_answer_text(completion: str | list[dict[str, Any]]) -> str:
    """The text of the completion's last assistant message (a text completion is its own answer)."""
    if isinstance(completion, str):
        return completion
    assistant = [message for message in completion if message.get("role", "assistant") == "assistant"]
    return text_of(assistant[-1]) if assistant else ""


def extract_answer(completion: str | list[dict[str, Any]]) -> str:
    """The last integer written in the final answer; "" if none.

    Example: "The answer is 476216." -> "476216", "12 or 13" -> "13", "1.5" -> "5", "none" -> "".
    """
    found = _INTEGER.findall(final_answer_text(completion))
    return found[-1] if found else ""


def is_correct(completion: str | list[dict[str, Any]], answer: str) -> bool:
    """True when the final answer's last integer is exactly `answer` ("0476216" is not "476216")."""
    extracted = extract_answer(completion)
    return extracted != "" and extracted == answer


def count_tool_calls(completion: str | list[dict[str, Any]]) -> int:
    """How many tool calls the completion's assistant messages made (0 for a text completion)."""
    if isinstance(completion, str):
        return 0
    return sum(len(message.get("tool_calls") or []) for message in completion if message.get("role") == "assistant")


def write_dataset(out_dir: str | Path, problems: list[MultiplicationProblem]) -> Path:
    """Write `problems` as `out_dir/dataset.json` (JSON Lines: prompt, question, answer); returns the file."""
    return rows.write_dataset(out_dir, (problem.row() for problem in problems))


def measure_tool_use(
    model,
    tokenizer,
    problems: list[MultiplicationProblem],
    *,
    num_samples: int = 1,
    temperature: float = 1.0,
    seed: int = 0,
    max_new_tokens: int = 64,
    max_tool_calling_iterations: int = 1,
    batch_size: int = 64,
) -> ToolUseResult:
    """Run TRL's tool loop on each problem's prompt with `multiply` available and score every sample.

    `num_samples` 1 decodes greedily; more sample at `temperature` from a seeded, forked RNG.

    Raises:
        ValueError: `problems` is empty; see `tool_loop.generate_with_tools` for the rest.
    """
    from grpokit.model.tool_loop import generate_with_tools

    if not problems:
        raise ValueError("measure_tool_use needs at least one problem")
    rollouts = generate_with_tools(
        model,
        tokenizer,
        [problem.prompt() for problem in problems],
        list(TOOLS),
        num_samples=num_samples,
        temperature=temperature,
        seed=seed,
        max_new_tokens=max_new_tokens,
        max_tool_calling_iterations=max_tool_calling_iterations,
        batch_size=batch_size,
    )
    samples = [(completion, problem) for problem, per_prompt in zip(problems, rollouts.completions) for completion in per_prompt]
    num_correct = sum(is_correct(completion, problem.answer) for completion, problem in samples)
    num_calling = sum(count_tool_calls(completion) > 0 for completion, _ in samples)
    return ToolUseResult(
        accuracy=num_correct / len(samples),
        tool_call_rate=num_calling / len(samples),
        tool_failure_rate=rollouts.tool_failures / rollouts.tool_calls if rollouts.tool_calls else 0.0,
        num_samples=len(samples),
        completions=rollouts.completions,
    )
