"""`rouge_l`: ROUGE-L overlap between the completion and a reference column."""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated, Any, Literal

from pydantic import Field, validate_call

from grpokit.rewards.common import RewardFunc, column_values, text_of


@validate_call
def rouge_l_reward(
    *,
    reference_column: str = "answer",
    score: Literal["precision", "recall", "f1"] = "precision",
    use_stemmer: bool = True,
    tokenizer: Literal["unicode", "ascii"] = "unicode",
    answer_tag: Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_.-]*$")] | None = None,
) -> RewardFunc:
    """ROUGE-L between each completion's text and the row's reference, in [0, 1].

    Computed by the `rouge-score` package (`RougeScorer(["rougeL"])`): the longest common subsequence
    (LCS) of the two token lists, over the completion's length (`precision`), the reference's length
    (`recall`) or their harmonic mean (`f1`). A completion or reference with no tokens scores 0.0; a row
    whose reference is None scores None ("not applicable" to TRL). Non-string references are `str()`-ed.

    Parameters:
        reference_column: the dataset column holding the reference text.
        score: which ROUGE-L figure to return. `precision` (the AWS sample's choice) rewards a short
            completion whose words all appear in the reference: pair it with `length` or use `f1`.
        use_stemmer: apply the Porter stemmer to ASCII words longer than 3 characters ("cats" = "cat").
        tokenizer: `unicode` (default) keeps the words of any script: lowercases, NFC-normalises, splits
            on anything that is not a letter, digit or combining mark, and makes each CJK, kana, Thai,
            Lao, Khmer or Myanmar character its own token (those scripts write no spaces). On ASCII text
            it yields exactly rouge-score's tokens. `ascii` is rouge-score's own tokenizer, which
            deletes every character outside a-z0-9: "café" becomes "caf" and a Chinese answer has no
            tokens at all, so scores 0.0.
        answer_tag: score only the text inside the completion's last `<answer_tag>...</answer_tag>`
            block (a completion without one scores 0.0). Default None: the whole completion, tags
            included as words, as in the AWS sample.

    Differences from the AWS GRPO sample's `rouge_reward_func`: the sample used the `rouge` package
    (pltrdy): case-sensitive whitespace tokens with punctuation attached, sentences split at ".",
    summary-level LCS, no stemming; and one empty completion made `rouge` raise, which the sample
    caught and turned into 0.0 for the whole batch. Here an empty completion scores 0.0 on its own.

    Example:
        >>> reward = rouge_l_reward(score="precision")
        >>> reward(prompts=["Q", "Q"], completions=["the cat sat", "a dog"], answer=["the cat sat down"] * 2)
        [1.0, 0.0]
    """
    return RougeL(reference_column, score, use_stemmer, tokenizer, answer_tag)


class RougeL:
    """The `rouge_l` reward. A class, not a closure, so TRL can pickle it into worker processes."""

    __name__ = "rouge_l"

    def __init__(
        self, reference_column: str, score: str, use_stemmer: bool, tokenizer: str, answer_tag: str | None
    ) -> None:
        self.reference_column = reference_column
        tag = re.escape(answer_tag) if answer_tag else None
        self.answer_block = re.compile(f"<{tag}>(.*?)</{tag}>", re.DOTALL) if tag else None
        self.score_field = {"precision": "precision", "recall": "recall", "f1": "fmeasure"}[score]
        self.required_columns = frozenset({reference_column})
        # Imported when a rouge_l reward is built, not with the registry: rouge-score brings nltk (about
        # 800 modules, 60 MB), which a run without rouge_l should not pay for.
        from rouge_score import rouge_scorer

        if tokenizer == "unicode":
            self.scorer = rouge_scorer.RougeScorer(["rougeL"], tokenizer=UnicodeTokenizer(use_stemmer))
        else:
            self.scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=use_stemmer)

    def __call__(self, prompts: list, completions: list, **columns: Any) -> list[float | None]:
        references = column_values(columns, self.reference_column, self.__name__, len(completions))
        return [
            None if reference is None else self.score_one(self.scored_text(completion), str(reference))
            for completion, reference in zip(completions, references, strict=True)
        ]

    def scored_text(self, completion: Any) -> str:
        text = text_of(completion)
        if self.answer_block is None:
            return text
        blocks = self.answer_block.findall(text)
        return blocks[-1] if blocks else ""

    def score_one(self, completion_text: str, reference_text: str) -> float:
        scores = self.scorer.score(target=reference_text, prediction=completion_text)["rougeL"]
        return float(getattr(scores, self.score_field))


# Scripts written without spaces between words: each character is a token.
_NO_SPACE_RANGES = (
    (0x0E00, 0x0EFF),  # Thai, Lao
    (0x1000, 0x109F),  # Myanmar
    (0x1780, 0x17FF),  # Khmer
    (0x3040, 0x30FF),  # Hiragana, Katakana
    (0x3400, 0x4DBF),  # CJK Extension A
    (0x4E00, 0x9FFF),  # CJK Unified Ideographs
    (0xF900, 0xFAFF),  # CJK Compatibility Ideographs
    (0x20000, 0x3134F),  # CJK Extensions B-G
)


class UnicodeTokenizer:
    """rouge-score tokenizer (its `Tokenizer` interface: `tokenize(text)`) that keeps non-ASCII words;
    identical to the default one on ASCII text."""

    def __init__(self, use_stemmer: bool) -> None:
        from nltk.stem import porter

        self.stemmer = porter.PorterStemmer() if use_stemmer else None

    def tokenize(self, text: str) -> list[str]:
        spaced = "".join(_spaced_char(char) for char in unicodedata.normalize("NFC", text.lower()))
        return [self._stem(token) for token in spaced.split()]

    def _stem(self, token: str) -> str:
        # rouge-score stems only words longer than 3 characters; Porter rules are English-only.
        if self.stemmer is None or len(token) <= 3 or not token.isascii():
            return token
        return self.stemmer.stem(token)


def _spaced_char(char: str) -> str:
    code = ord(char)
    if any(low <= code <= high for low, high in _NO_SPACE_RANGES):
        return f" {char} "
    return char if unicodedata.category(char)[0] in "LNM" else " "
