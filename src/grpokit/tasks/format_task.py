"""Short questions in the AWS GRPO sample's chat layout: the task of the AWS-sample demo on `builtin:tiny-chat`.

Each row is what the sample's notebook writes to `<channel>/dataset.json` (JSON Lines): `question`,
`prompt` (the sample's system prompt asking for `<think>...</think>` then `<answer>...</answer>`,
then the question as the user turn) and `answer`, a one-sentence reference. The questions are
small enough for a 1 M parameter model: adding small numbers, counting on, first letters, last
words, comparing numbers. The sample scores completions with ROUGE-L precision against `answer`,
a length reward and a format reward; `measure_format` reports the first and the last on held-out
prompts.

Questions are split once on their text (`is_heldout_question`): `heldout_problems()` never appear
in `make_problems(...)`.

Example:
    >>> problem = FormatProblem("What number comes after 41?", "The number after 41 is 42.", "Count on from 41.")
    >>> problem.formatted_response()
    '<think>\\nCount on from 41.\\n</think>\\n<answer>\\nThe number after 41 is 42.\\n</answer>'
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grpokit.tasks import rows

# The AWS sample's system prompt, verbatim (model-trainer-notebook.ipynb, `prepare_dataset`).
SYSTEM_PROMPT = (
    "\n    Respond in the following format:\n    <think>\n    ...\n    </think>\n    <answer>\n    ...\n    </answer>\n    "
)
HELDOUT_ONE_IN = 8
HELDOUT_ORDER_SEED = 20261208
WORDS = (
    "apple", "bread", "chair", "dog", "eagle", "fish", "grape", "house", "island", "jacket", "kite", "lemon",
    "mouse", "night", "orange", "pencil", "queen", "river", "snake", "table", "umbrella", "violin", "window",
    "yellow", "zebra", "garden", "cloud", "stone", "tiger", "rabbit", "candle", "forest", "bottle", "mirror",
    "planet", "silver", "winter", "summer", "button", "ladder", "pillow", "rocket", "saddle", "tomato", "wagon",
    "basket", "coffee", "dragon", "engine", "flower", "guitar", "hammer", "jungle", "kitten", "monkey", "needle",
    "ocean", "parrot", "rain", "sugar", "turtle", "valley", "wheel", "yogurt", "anchor", "bridge", "castle",
)  # fmt: skip
# What a chat model says around its answer when it ignores the requested format.
CHATTY_OPENERS = (
    "Sure, I can help you with that question, it is a good one to ask.",
    "Sure, good question, let me think about it for a moment before I reply.",
    "Sure, happy to help with this one, here is my reply to your question.",
    "Sure, thanks for the question, I looked at it carefully and here is what I found.",
    "Sure, let me answer that for you right away, it does not take long.",
)  # fmt: skip
CHATTY_CLOSERS = (
    "I hope this helps you, and have a nice day.",
    "Let me know if you have any other questions for me.",
    "Thanks for asking such a nice question today.",
    "Feel free to ask me more whenever you like.",
)  # fmt: skip


@dataclass(frozen=True)
class FormatProblem:
    """One question with its reference `answer` (a sentence) and a short `think` a worked reply gives."""

    question: str
    answer: str
    think: str

    def prompt(self) -> list[dict[str, str]]:
        """The chat prompt, as the AWS sample builds it: its system prompt, then the question."""
        return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": self.question}]

    def row(self) -> dict[str, Any]:
        """A row of the sample's `dataset.json`: question, prompt (chat messages), answer."""
        return {"question": self.question, "prompt": self.prompt(), "answer": self.answer}

    def formatted_response(self) -> str:
        """A reply that follows the requested format."""
        return f"<think>\n{self.think}\n</think>\n<answer>\n{self.answer}\n</answer>"

    def chatty_response(self, rng: random.Random) -> str:
        """A reply that ignores the format: the answer wrapped in pleasantries (low ROUGE-L precision)."""
        return f"{rng.choice(CHATTY_OPENERS)} {self.answer} {rng.choice(CHATTY_CLOSERS)}"


@dataclass(frozen=True)
class FormatResult:
    """Held-out means over all samples of the sample's format reward and ROUGE-L precision, the mean
    completion length in characters, and the completion texts (one list per problem)."""

    format_reward: float
    rouge_l_precision: float
    mean_length: float
    num_samples: int
    completions: list[list[str]]


def _addition(rng: random.Random) -> FormatProblem:
    a, b = rng.randint(0, 20), rng.randint(0, 20)
    return FormatProblem(f"What is {a} plus {b}?", f"{a} plus {b} is {a + b}.", f"{a} plus {b}.")


def _successor(rng: random.Random) -> FormatProblem:
    n = rng.randint(0, 98)
    return FormatProblem(f"What number comes after {n}?", f"The number after {n} is {n + 1}.", f"Count on from {n}.")


def _first_letter(rng: random.Random) -> FormatProblem:
    word = rng.choice(WORDS)
    return FormatProblem(
        f"What is the first letter of the word {word}?", f"The first letter of {word} is {word[0]}.", f"The word is {word}."
    )


def _last_word(rng: random.Random) -> FormatProblem:
    words = rng.sample(WORDS, 3)
    return FormatProblem(
        f"What is the last word in: {' '.join(words)}?", f"The last word is {words[-1]}.", f"The words are {', '.join(words)}."
    )


def _larger(rng: random.Random) -> FormatProblem:
    a, b = rng.sample(range(100), 2)
    return FormatProblem(
        f"Which is larger, {a} or {b}?", f"{max(a, b)} is larger than {min(a, b)}.", f"Compare {a} and {b}."
    )


FAMILIES = (_addition, _successor, _first_letter, _last_word, _larger)


def is_heldout_question(question: str) -> bool:
    """True when the question is held out; decided by a stable hash of its text."""
    digest = hashlib.sha256(question.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % HELDOUT_ONE_IN == 0


def _draw(rng: random.Random, heldout: bool) -> FormatProblem:
    while True:
        problem = rng.choice(FAMILIES)(rng)
        if is_heldout_question(problem.question) == heldout:
            return problem


def make_problems(n: int, *, seed: int) -> list[FormatProblem]:
    """`n` training problems, families and contents drawn uniformly, held-out questions excluded.

    The same `seed` gives the same list; problems can repeat.

    Raises:
        ValueError: `n` is negative.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng = random.Random(seed)
    return [_draw(rng, heldout=False) for _ in range(n)]


def heldout_problems(n: int = 100) -> list[FormatProblem]:
    """The first `n` held-out problems in a fixed order, no question twice (never in training).

    Raises:
        ValueError: `n` is negative or larger than 1,000.
    """
    if not 0 <= n <= 1000:
        raise ValueError(f"n must be in 0..1000, got {n}")
    rng = random.Random(HELDOUT_ORDER_SEED)
    seen: set[str] = set()
    problems: list[FormatProblem] = []
    while len(problems) < n:
        problem = _draw(rng, heldout=True)
        if problem.question not in seen:
            seen.add(problem.question)
            problems.append(problem)
    return problems


def write_dataset(out_dir: str | Path, problems: list[FormatProblem]) -> Path:
    """Write `problems` as `out_dir/dataset.json` in the sample's layout (JSON Lines); returns the file."""
    return rows.write_dataset(out_dir, (problem.row() for problem in problems))


def sample_rewards():
    """The AWS sample's ROUGE-L and format rewards as `grpokit convert aws-sample` writes them."""
    from grpokit.rewards.rouge_l import rouge_l_reward
    from grpokit.rewards.tag_format import format_reward

    return rouge_l_reward(reference_column="answer", score="precision", use_stemmer=False), format_reward()


def score_completions(completions: list[str], references: list[str]) -> tuple[list[float], list[float]]:
    """(format reward, ROUGE-L precision) of each completion text against its reference."""
    rouge, tag_format = sample_rewards()
    prompts = [""] * len(completions)
    return tag_format(prompts, completions), rouge(prompts, completions, answer=references)


def measure_format(
    model,
    tokenizer,
    problems: list[FormatProblem],
    *,
    num_samples: int = 1,
    temperature: float = 1.0,
    seed: int = 0,
    max_new_tokens: int = 64,
    batch_size: int = 64,
) -> FormatResult:
    """Generate for each held-out prompt and average the sample's format reward and ROUGE-L precision.

    `num_samples` 1 decodes greedily; more sample at `temperature` from a seeded, forked RNG.

    Raises:
        ValueError: `problems` is empty.
    """
    from grpokit.data.messages import text_of
    from grpokit.model.generation import GenerationSettings, generate_completions

    if not problems:
        raise ValueError("measure_format needs at least one problem")
    settings = GenerationSettings(
        max_new_tokens=max_new_tokens, num_samples=num_samples, temperature=temperature, batch_size=batch_size, seed=seed
    )
    was_training = model.training
    model.eval()
    try:
        per_prompt, _ = generate_completions(model, tokenizer, [problem.prompt() for problem in problems], settings)
    finally:
        model.train(was_training)
    texts = [[text_of(completion) for completion in samples] for samples in per_prompt]
    flat = [text for samples in texts for text in samples]
    references = [problem.answer for problem, samples in zip(problems, texts) for _ in samples]
    formats, precisions = score_completions(flat, references)
    return FormatResult(
        format_reward=sum(formats) / len(flat),
        rouge_l_precision=sum(precisions) / len(flat),
        mean_length=sum(len(text) for text in flat) / len(flat),
        num_samples=len(flat),
        completions=texts,
    )
