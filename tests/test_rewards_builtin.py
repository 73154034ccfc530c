"""Built-in rewards: table-driven (completion, expected) checks, values worked out by hand."""

from __future__ import annotations

import doctest

import pytest
from rouge_score import rouge_scorer

from grpokit.errors import RewardConfigError
from grpokit.rewards import REGISTRY, build_reward, text_of
from grpokit.rewards import length as length_module
from grpokit.rewards import rouge_l as rouge_l_module
from grpokit.rewards import tag_format as tag_format_module


def chat(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


def score_one(name: str, completion, **params_and_columns) -> float | None:
    columns = {k: [v] for k, v in params_and_columns.items() if k in ("answer", "completion_ids")}
    params = {k: v for k, v in params_and_columns.items() if k not in columns}
    return build_reward(name, **params)(prompts=["Q"], completions=[completion], **columns)[0]


# ---------------------------------------------------------------- text_of


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        ("plain text", "plain text"),
        ("", ""),
        (chat("from chat"), "from chat"),
        ([{"role": "assistant", "content": None}], ""),
        (
            [
                {
                    "role": "assistant",
                    "content": [
                        {"type": "text", "text": "a"},
                        {"type": "image"},
                        {"type": "text", "text": "b"},
                    ],
                }
            ],
            "ab",
        ),
        (
            [
                {"role": "assistant", "content": "a"},
                {"role": "tool", "content": "x"},
                {"role": "assistant", "content": "b"},
            ],
            "a\nb",
        ),
        ({"role": "assistant", "content": "one message"}, "one message"),
        ([{"content": "no role"}], "no role"),
        ([], ""),
        (chat("猫 café"), "猫 café"),
    ],
)
def test_text_of(completion, expected):
    assert text_of(completion) == expected


def test_text_of_rejects_other_shapes():
    with pytest.raises(TypeError, match="int"):
        text_of(42)


# ---------------------------------------------------------------- rouge_l

REFERENCE = "the cat sat on the mat"


@pytest.mark.parametrize(
    ("completion", "score", "expected"),
    [
        # pred [the cat sat], ref [the cat sat on the mat]: LCS 3 -> P 3/3, R 3/6, F 2PR/(P+R) = 2/3
        ("the cat sat", "precision", 1.0),
        ("the cat sat", "recall", 0.5),
        ("the cat sat", "f1", 2 / 3),
        # pred [the mat sat]: LCS 2 ("the sat" or "the mat") -> P 2/3, R 2/6, F 4/9
        ("the mat sat", "precision", 2 / 3),
        ("the mat sat", "recall", 1 / 3),
        ("the mat sat", "f1", 4 / 9),
        # case and punctuation are dropped by the tokenizer
        ("The CAT, sat!", "precision", 1.0),
        ("", "precision", 0.0),
        ("   ", "f1", 0.0),
        ("dog", "precision", 0.0),
        (chat("the cat sat"), "precision", 1.0),
        ([{"role": "assistant", "content": [{"type": "text", "text": "the cat sat"}]}], "recall", 0.5),
    ],
)
def test_rouge_l_hand_worked(completion, score, expected):
    assert score_one("rouge_l", completion, answer=REFERENCE, score=score) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("completion", "reference", "tokenizer", "expected"),
    [
        # Porter stemming: cats -> cat, sitting / sits -> sit (only words longer than 3 characters)
        ("cats sitting", "cat sits", "unicode", 1.0),
        # Chinese: one token per character, [我 喜 欢 猫] vs [我 喜 欢 狗]: LCS 3 of 4
        ("我喜欢猫", "我喜欢狗", "unicode", 0.75),
        ("我喜欢猫", "我喜欢狗", "ascii", 0.0),  # rouge-score's tokenizer deletes every non-ASCII character
        # Cyrillic words are kept: [кошка сидит] vs [кошка спит]: LCS 1 of 2
        ("кошка сидит", "кошка спит", "unicode", 0.5),
        ("кошка сидит", "кошка спит", "ascii", 0.0),
        # rouge-score turns "über" into "ber" and wrongly matches it
        ("über", "ber", "unicode", 0.0),
        ("über", "ber", "ascii", 1.0),
        # composed and decomposed accents are the same word (NFC)
        ("cafe\u0301 noir", "café noir", "unicode", 1.0),
        ("Straße", "straße", "unicode", 1.0),
        ("", "我喜欢狗", "unicode", 0.0),
    ],
)
def test_rouge_l_stemming_and_unicode(completion, reference, tokenizer, expected):
    got = score_one("rouge_l", completion, answer=reference, tokenizer=tokenizer)
    assert got == pytest.approx(expected)


@pytest.mark.parametrize(
    ("completion", "answer_tag", "reference", "expected"),
    [
        # whole completion: [think x think answer the cat sat answer], LCS 3 of 8
        ("<think>x</think><answer>the cat sat</answer>", None, "the cat sat", 3 / 8),
        ("<think>x</think><answer>the cat sat</answer>", "answer", "the cat sat", 1.0),
        (
            "<answer>dog</answer> then <answer>the cat sat</answer>",
            "answer",
            "the cat sat",
            1.0,
        ),  # last block
        ("the cat sat", "answer", "the cat sat", 0.0),  # no block
        ("<answer></answer>", "answer", "the cat sat", 0.0),
        (chat("<final>猫</final>"), "final", "猫", 1.0),
    ],
)
def test_rouge_l_answer_tag(completion, answer_tag, reference, expected):
    got = score_one("rouge_l", completion, answer=reference, answer_tag=answer_tag)
    assert got == pytest.approx(expected)


def test_rouge_l_without_stemmer_needs_exact_words():
    assert score_one("rouge_l", "cats sitting", answer="cat sits", use_stemmer=False) == 0.0


ASCII_PAIRS = [
    ("The quick brown fox jumps over the lazy dog.", "A quick brown dog jumped over the fox"),
    ("running runners ran; the runner's run", "the runner runs and running is fun"),
    ("42 is the answer, isn't it?", "The answer is 42"),
    ("under_score and hyphen-ated words", "underscore and hyphenated words"),
    ("", "non empty"),
]


@pytest.mark.parametrize(("completion", "reference"), ASCII_PAIRS)
@pytest.mark.parametrize("score", ["precision", "recall", "f1"])
@pytest.mark.parametrize("use_stemmer", [True, False])
@pytest.mark.parametrize("tokenizer", ["unicode", "ascii"])
def test_rouge_l_matches_rouge_score_on_ascii(completion, reference, score, use_stemmer, tokenizer):
    direct = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=use_stemmer).score(reference, completion)[
        "rougeL"
    ]
    field = {"precision": "precision", "recall": "recall", "f1": "fmeasure"}[score]
    got = score_one(
        "rouge_l", completion, answer=reference, score=score, use_stemmer=use_stemmer, tokenizer=tokenizer
    )
    assert got == pytest.approx(getattr(direct, field))


def test_rouge_l_reference_column_none_and_non_string():
    reward = build_reward("rouge_l", reference_column="gold")
    assert reward.required_columns == frozenset({"gold"})
    assert reward(prompts=["Q", "Q"], completions=["42", "x"], gold=[42, None]) == [1.0, None]


def test_rouge_l_missing_column_is_a_config_error():
    with pytest.raises(RewardConfigError, match='needs the dataset column "answer"'):
        build_reward("rouge_l")(prompts=["Q"], completions=["x"], solution=["x"])


# ---------------------------------------------------------------- length


@pytest.mark.parametrize(
    ("completion", "params", "expected"),
    [
        # score = max(0, 1 - max(0, |n - target| - tolerance) / target), target 10
        ("x" * 10, {}, 1.0),
        ("x" * 5, {}, 0.5),
        ("x" * 15, {}, 0.5),
        ("x" * 20, {}, 0.0),
        ("x" * 25, {}, 0.0),
        ("", {}, 0.0),
        (chat("x" * 8), {}, 0.8),
        ("é" * 10, {}, 1.0),  # code points, not bytes
        ("猫" * 5, {}, 0.5),
        ("x" * 12, {"tolerance": 2}, 1.0),
        ("x" * 13, {"tolerance": 2}, 0.9),
        ("x" * 7, {"tolerance": 2}, 0.9),
        ("x" * 15, {"penalize_longer": False}, 1.0),
        ("x" * 5, {"penalize_longer": False}, 0.5),
        ("", {"penalize_longer": False}, 0.0),
    ],
)
def test_length_chars(completion, params, expected):
    assert score_one("length", completion, target_length=10, **params) == pytest.approx(expected)


def test_length_default_target_is_the_aws_samples_512():
    assert score_one("length", "x" * 256) == pytest.approx(0.5)


@pytest.mark.parametrize(("ids", "expected"), [([1] * 4, 1.0), ([1] * 2, 0.5), ([], 0.0), ([7] * 6, 0.5)])
def test_length_tokens_counts_completion_ids(ids, expected):
    # the text is ignored with unit: tokens
    assert (
        score_one("length", "whatever text", target_length=4, unit="tokens", completion_ids=ids) == expected
    )


def test_length_tokens_without_completion_ids_is_a_config_error():
    with pytest.raises(RewardConfigError, match="completion_ids"):
        build_reward("length", unit="tokens")(prompts=["Q"], completions=["x"])


@pytest.mark.parametrize("params", [{"target_length": 0}, {"tolerance": -1}, {"unit": "words"}])
def test_length_rejects_bad_values(params):
    with pytest.raises(RewardConfigError, match='reward "length" has an invalid parameter value'):
        build_reward("length", **params)


# ---------------------------------------------------------------- format

FULL = "<think>a</think><answer>b</answer>"


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        (FULL, 1.0),
        ("  <think>a</think>\n\n<answer>b</answer>\n", 1.0),
        ("<think>step 1\nstep 2</think>\n<answer>42</answer>", 1.0),
        ("", 0.0),
        ("<answer>b</answer><think>a</think>", 0.0),  # wrong order
        ("Sure! " + FULL, 0.0),  # text outside the blocks
        (FULL + " done", 0.0),
        ("<think></think><answer>b</answer>", 0.0),  # empty block
        ("<think>a</think><answer> </answer>", 0.0),
        (FULL + "<answer>c</answer>", 0.0),  # a second answer
        ("<think>a<think>b</think><answer>c</answer>", 0.0),  # nested tag
        ("<think>a</think>", 0.0),
        ("<answer>b</answer>", 0.0),
        (chat(FULL), 1.0),
        ([{"role": "assistant", "content": [{"type": "text", "text": FULL}]}], 1.0),
        ("<think>猫は可愛い</think><answer>はい</answer>", 1.0),
        ("<THINK>a</THINK><ANSWER>b</ANSWER>", 0.0),  # tags are case-sensitive
    ],
)
def test_format_default(completion, expected):
    assert score_one("format", completion) == expected


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        (FULL, 1.0),
        ("<answer>b</answer>", 0.25),
        ("<think>a</think>", 0.25),
        ("<answer>b</answer><think>a</think>", 0.5),
        ("intro " + FULL, 0.5),
        ("<think></think><answer>b</answer>", 0.25),  # the empty think block does not count
        ("<think>a</think><answer>", 0.25),  # unclosed answer
        ("", 0.0),
        (chat("<answer>b</answer>"), 0.25),
        ("<answer>猫</answer>", 0.25),
    ],
)
def test_format_partial_credit(completion, expected):
    assert score_one("format", completion, partial_credit=0.25) == expected


def test_format_without_require_content_accepts_empty_blocks():
    assert score_one("format", "<think></think><answer></answer>", require_content=False) == 1.0


def test_format_custom_tags():
    reward = build_reward("format", think_tag="reasoning", answer_tag="final")
    completions = ["<reasoning>x</reasoning> <final>y</final>", FULL]
    assert reward(prompts=["Q", "Q"], completions=completions) == [1.0, 0.0]


@pytest.mark.parametrize(
    "params",
    [{"partial_credit": 0.6}, {"partial_credit": -0.1}, {"think_tag": "a b"}, {"answer_tag": "<x>"}],
)
def test_format_rejects_bad_values(params):
    with pytest.raises(RewardConfigError, match='reward "format"'):
        build_reward("format", **params)


def test_format_rejects_identical_tags():
    with pytest.raises(RewardConfigError, match="both"):
        build_reward("format", think_tag="t", answer_tag="t")


# ---------------------------------------------------------------- all built-ins


# The built-ins that have a parameter without a default, with a minimal value for it.
REQUIRED_PARAMS = {
    "regex": {"pattern": "x"},
    "http": {"url": "http://127.0.0.1:9/score"},
    "reward_model": {"model_name_or_path": "/nonexistent/reward-model"},
    "overlong_penalty": {"max_completion_length": 16},
    "isolated": {"reward": "length"},
}


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_builtin_names_and_attributes(name):
    params = REQUIRED_PARAMS.get(name, {})
    reward = build_reward(name, **params)
    assert reward.__name__ == params.get("reward", name)  # `isolated` takes the name of the reward it runs
    assert isinstance(reward.required_columns, frozenset)
    assert "Example" in REGISTRY[name].__doc__


@pytest.mark.parametrize("module", [rouge_l_module, length_module, tag_format_module])
def test_docstring_examples_run(module):
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0
