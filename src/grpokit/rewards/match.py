"""`exact_match` and `numeric_match`: the completion's answer against a reference column."""

from __future__ import annotations

import math
import re
from fractions import Fraction
from typing import Annotated, Any, Literal

from pydantic import Field, validate_call

from grpokit.rewards.common import RewardFunc, column_values, text_of

TagName = Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_.-]*$")]
Extract = Literal["none", "answer_block", "last_number", "first_number"]

# A number as written in an answer: sign, digits with optional thousands commas, decimals, exponent,
# or a fraction a/b. "1,234.5", "-3", ".5", "2e-3", "3/4".
NUMBER = re.compile(
    r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d+)?(?:[eE][-+]?\d+)?(?:\s*/\s*\d+)?",
)
_NUMBER_TOKEN = re.compile(
    r"(?<![\w.])[-+]?(?:(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d+)?(?:\s*/\s*\d+)?"
)


def answer_block(text: str, tag: str) -> str | None:
    """The content of the last `<tag>...</tag>` block of `text`, or None when there is none."""
    blocks = re.findall(rf"<{re.escape(tag)}>(.*?)</{re.escape(tag)}>", text, re.DOTALL)
    return blocks[-1] if blocks else None


def numbers_in(text: str) -> list[str]:
    """Every number written in `text`, in order: `"x = 1,234.5 or -3/4"` -> `["1,234.5", "-3/4"]`."""
    return [match.group(0) for match in _NUMBER_TOKEN.finditer(text)]


def parse_number(text: str) -> float | None:
    """`text` (stripped) as a number: commas between digit groups, decimals, exponent, `a/b`; else None."""
    cleaned = text.strip()
    if not cleaned or NUMBER.fullmatch(cleaned) is None or not any(c.isdigit() for c in cleaned):
        return None
    cleaned = "".join(cleaned.split()).replace(",", "")
    try:
        value = float(Fraction(cleaned)) if "/" in cleaned else float(cleaned)
    except (ValueError, ZeroDivisionError):
        return None
    return value if math.isfinite(value) else None


def extract_answer(text: str, extract: str, tag: str) -> str:
    """The part of `text` a match reward compares; "" when the asked-for part is absent."""
    if extract == "answer_block":
        return answer_block(text, tag) or ""
    if extract in ("last_number", "first_number"):
        found = numbers_in(text)
        return (found[-1] if extract == "last_number" else found[0]) if found else ""
    return text


def normalize_text(text: str, *, strip: bool, ignore_case: bool, collapse_whitespace: bool) -> str:
    if collapse_whitespace:
        text = " ".join(text.split()) if strip else re.sub(r"\s+", " ", text)
    elif strip:
        text = text.strip()
    return text.casefold() if ignore_case else text


@validate_call
def exact_match_reward(
    *,
    reference_column: str = "answer",
    extract: Extract = "none",
    answer_tag: TagName = "answer",
    strip: bool = True,
    ignore_case: bool = False,
    collapse_whitespace: bool = True,
    compare_numbers: bool = True,
) -> RewardFunc:
    """1.0 when the completion's answer equals the row's reference after normalisation, else 0.0.

    The answer is the completion's text, or with `extract` a part of it: the last
    `<answer_tag>...</answer_tag>` block (`answer_block`), or the last / first number written in it.
    Both sides are then normalised the same way: `strip` (ends), `collapse_whitespace` (runs of
    whitespace become one space), `ignore_case` (Unicode casefold). With `compare_numbers`, when both
    sides read as numbers they are compared as numbers ("1,000" = "1000.0" = "1e3"). A row whose
    reference is None scores None; a completion without the extracted part scores 0.0.

    Parameters:
        reference_column: the dataset column holding the reference answer (any value; `str()`-ed).
        extract: `none` (whole text), `answer_block`, `last_number` or `first_number`.
        answer_tag: the tag `answer_block` looks for.
        strip, ignore_case, collapse_whitespace: the normalisation applied to both sides.
        compare_numbers: compare as numbers when both sides parse as one (exact equality; use
            `numeric_match` for a tolerance).

    Example:
        >>> reward = exact_match_reward(extract="answer_block", ignore_case=True)
        >>> reward(prompts=["Q"] * 3, completions=["<answer> Paris </answer>", "<answer>Lyon</answer>", "Paris"],
        ...        answer=["paris"] * 3)
        [1.0, 0.0, 0.0]
    """
    return ExactMatch(
        reference_column, extract, answer_tag, strip, ignore_case, collapse_whitespace, compare_numbers
    )


class ExactMatch:
    """The `exact_match` reward. A class, not a closure, so TRL can pickle it into worker processes."""

    __name__ = "exact_match"

    def __init__(
        self,
        reference_column: str,
        extract: str,
        answer_tag: str,
        strip: bool,
        ignore_case: bool,
        collapse_whitespace: bool,
        compare_numbers: bool,
    ) -> None:
        self.reference_column = reference_column
        self.required_columns = frozenset({reference_column})
        self.extract = extract
        self.answer_tag = answer_tag
        self.normalization = {"strip": strip, "ignore_case": ignore_case, "collapse_whitespace": collapse_whitespace}
        self.compare_numbers = compare_numbers

    def __call__(self, prompts: list, completions: list, **columns: Any) -> list[float | None]:
        references = column_values(columns, self.reference_column, self.__name__, len(completions))
        return [
            None if reference is None else self.score_text(text_of(completion), str(reference))
            for completion, reference in zip(completions, references, strict=True)
        ]

    def score_text(self, text: str, reference: str) -> float:
        answer = extract_answer(text, self.extract, self.answer_tag)
        if self.extract != "none" and not answer:
            return 0.0
        if self.compare_numbers:
            answer_number, reference_number = parse_number(answer), parse_number(reference)
            if answer_number is not None and reference_number is not None:
                return float(answer_number == reference_number)
        normalized = normalize_text(answer, **self.normalization)
        return float(normalized == normalize_text(reference, **self.normalization))


@validate_call
def numeric_match_reward(
    *,
    reference_column: str = "answer",
    extract: Literal["last_number", "first_number", "answer_block", "none"] = "last_number",
    answer_tag: TagName = "answer",
    abs_tol: Annotated[float, Field(ge=0.0)] = 1e-6,
    rel_tol: Annotated[float, Field(ge=0.0)] = 0.0,
) -> RewardFunc:
    """1.0 when the number in the completion equals the row's reference number within a tolerance.

    The completion's number is its last (or first) number (`1,234.5`, `-3`, `2e-3` and `3/4` are
    numbers), or the content of its last `<answer_tag>` block read as one number (`answer_block`),
    or its whole text (`none`). Equal means `math.isclose(x, reference, rel_tol, abs_tol)`. A
    completion with no number scores 0.0; a reference of None scores None; a reference that is not a
    number raises `ValueError` (a data error: `on_error` decides, naming the row).

    Parameters:
        reference_column: the dataset column holding the reference number (a number or its text).
        extract: `last_number` (default), `first_number`, `answer_block` or `none`.
        answer_tag: the tag `answer_block` looks for.
        abs_tol, rel_tol: the tolerance of `math.isclose`.

    Example:
        >>> reward = numeric_match_reward()
        >>> reward(prompts=["Q"] * 3, completions=["so 12+34 = 46", "46.0000001", "forty-six"], answer=[46] * 3)
        [1.0, 1.0, 0.0]
    """
    return NumericMatch(reference_column, extract, answer_tag, abs_tol, rel_tol)


class NumericMatch:
    """The `numeric_match` reward. A class, not a closure, so TRL can pickle it into worker processes."""

    __name__ = "numeric_match"

    def __init__(self, reference_column: str, extract: str, answer_tag: str, abs_tol: float, rel_tol: float) -> None:
        self.reference_column = reference_column
        self.required_columns = frozenset({reference_column})
        self.extract = extract
        self.answer_tag = answer_tag
        self.abs_tol = abs_tol
        self.rel_tol = rel_tol

    def __call__(self, prompts: list, completions: list, **columns: Any) -> list[float | None]:
        references = column_values(columns, self.reference_column, self.__name__, len(completions))
        return [
            None if reference is None else self.score_text(text_of(completion), self.reference_number(reference))
            for completion, reference in zip(completions, references, strict=True)
        ]

    def reference_number(self, reference: Any) -> float:
        if isinstance(reference, int | float) and not isinstance(reference, bool):
            return float(reference)
        value = parse_number(str(reference))
        if value is None:
            raise ValueError(f'the reference {reference!r} in column "{self.reference_column}" is not a number')
        return value

    def score_text(self, text: str, reference: float) -> float:
        value = parse_number(extract_answer(text, self.extract, self.answer_tag))
        if value is None:
            return 0.0
        return float(math.isclose(value, reference, rel_tol=self.rel_tol, abs_tol=self.abs_tol))
