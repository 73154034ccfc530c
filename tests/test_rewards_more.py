"""The added built-in rewards: table-driven (completion, expected) checks, values worked out by hand.

Each table has plain and chat-format completions, an empty one, unicode, and for the rewards that read
a reference column a missing (None) reference and a missing column.
"""

from __future__ import annotations

import doctest
import pickle
import threading
from pathlib import Path

import pytest

from grpokit.errors import RewardConfigError, RunError
from grpokit.rewards import REGISTRY, GuardedReward, build_reward
from grpokit.rewards import json_valid as json_valid_module
from grpokit.rewards import match as match_module
from grpokit.rewards import math_equivalence as math_module
from grpokit.rewards import penalties as penalties_module
from grpokit.rewards import regex as regex_module
from grpokit.rewards.groups import zero_spread_fraction


def chat(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


def score_one(name: str, completion, columns: dict | None = None, **params) -> float | None:
    columns = {key: [value] for key, value in (columns or {}).items()}
    return build_reward(name, **params)(prompts=["Q"], completions=[completion], **columns)[0]


@pytest.mark.parametrize(
    "module", [match_module, regex_module, json_valid_module, penalties_module, math_module], ids=lambda m: m.__name__
)
def test_docstring_examples(module):
    result = doctest.testmod(module)
    assert result.attempted > 0, "the module's docstrings hold examples to run"
    assert result.failed == 0


def test_registry_lists_the_new_rewards():
    new = {
        "exact_match", "numeric_match", "math_verify", "regex", "json_valid",
        "repetition_penalty", "overlong_penalty", "reward_model", "http", "isolated",
    }  # fmt: skip
    assert new <= set(REGISTRY)


# ---------------------------------------------------------------- exact_match


@pytest.mark.parametrize(
    ("completion", "reference", "params", "expected"),
    [
        ("Paris", "Paris", {}, 1.0),
        ("  Paris \n", "Paris", {}, 1.0),  # strip
        ("paris", "Paris", {}, 0.0),  # case counts by default
        ("paris", "Paris", {"ignore_case": True}, 1.0),
        ("New   York", "New York", {}, 1.0),  # whitespace collapsed
        ("New   York", "New York", {"collapse_whitespace": False}, 0.0),
        (chat("Paris"), "Paris", {}, 1.0),
        ("", "Paris", {}, 0.0),
        ("", "", {}, 1.0),  # both empty: equal
        ("Paris", None, {}, None),  # missing reference: not applicable
        ("Ünïcödé 猫", "ünïcödé 猫", {"ignore_case": True}, 1.0),
        ("STRASSE", "straße", {"ignore_case": True}, 1.0),  # casefold, not lower
        ("<think>hm</think><answer> 42 </answer>", "42", {"extract": "answer_block"}, 1.0),
        ("<answer>1</answer><answer>42</answer>", "42", {"extract": "answer_block"}, 1.0),  # last block
        ("42", "42", {"extract": "answer_block"}, 0.0),  # no block
        ("<answer></answer>", "", {"extract": "answer_block"}, 0.0),  # an empty block is no answer
        ("<sol>7</sol>", "7", {"extract": "answer_block", "answer_tag": "sol"}, 1.0),
        ("so 3 then 1,000", "1000", {"extract": "last_number"}, 1.0),
        ("so 3 then 1,000", "3", {"extract": "first_number"}, 1.0),
        ("no digits", "3", {"extract": "last_number"}, 0.0),
        ("1000.0", "1e3", {}, 1.0),  # numbers compared as numbers
        ("1000.0", "1e3", {"compare_numbers": False}, 0.0),
        ("46", 46, {}, 1.0),  # non-string reference is str()-ed
    ],
)
def test_exact_match(completion, reference, params, expected):
    assert score_one("exact_match", completion, {"answer": reference}, **params) == expected


def test_exact_match_reads_another_column_and_names_a_missing_one():
    assert score_one("exact_match", "x", {"gold": "x"}, reference_column="gold") == 1.0
    reward = build_reward("exact_match")
    assert reward.required_columns == {"answer"}
    with pytest.raises(RewardConfigError, match='needs the dataset column "answer"'):
        reward(prompts=["Q"], completions=["x"], gold=["x"])


# ---------------------------------------------------------------- numeric_match


@pytest.mark.parametrize(
    ("completion", "reference", "params", "expected"),
    [
        ("The answer is 46.", "46", {}, 1.0),
        ("46", 46, {}, 1.0),
        ("46.0000001", "46", {}, 1.0),  # within abs_tol 1e-6
        ("46.01", "46", {}, 0.0),
        ("46.01", "46", {"abs_tol": 0.1}, 1.0),
        ("101", "100", {"abs_tol": 0.0, "rel_tol": 0.01}, 1.0),
        ("first 3, finally -2.5", "-2.5", {}, 1.0),
        ("first 3, finally -2.5", "3", {"extract": "first_number"}, 1.0),
        ("total: 1,234,567", "1234567", {}, 1.0),  # thousands separators
        ("x = 3/4", "0.75", {}, 1.0),  # a fraction
        ("2e3", "2000", {}, 1.0),
        ("<answer>12</answer> checked 13", "12", {"extract": "answer_block"}, 1.0),
        ("<answer>twelve</answer>", "12", {"extract": "answer_block"}, 0.0),
        (" 12 ", "12", {"extract": "none"}, 1.0),
        ("12 apples", "12", {"extract": "none"}, 0.0),
        (chat("so 7"), "7", {}, 1.0),
        ("", "7", {}, 0.0),
        ("no number", "7", {}, 0.0),
        ("٤٦ or 46", "46", {}, 1.0),  # unicode digits are not read as numbers; the ASCII 46 is
        ("46", None, {}, None),
    ],
)
def test_numeric_match(completion, reference, params, expected):
    assert score_one("numeric_match", completion, {"answer": reference}, **params) == expected


def test_numeric_match_non_numeric_reference_names_the_row():
    guarded = GuardedReward(build_reward("numeric_match"), "numeric_match", on_error="raise")
    with pytest.raises(RunError, match=r"dataset row 5.*'forty' in column \"answer\" is not a number"):
        guarded(prompts=["Q"], completions=["40"], answer=["forty"], grpokit_row=[5])


# ---------------------------------------------------------------- math_verify

HALF = "$\\frac{1}{2}$"


@pytest.mark.parametrize(
    ("completion", "reference", "params", "expected"),
    [
        ("So the answer is $\\boxed{\\frac{1}{2}}$", HALF, {}, 1.0),
        ("$0.5$", HALF, {}, 1.0),
        ("$\\frac{2}{4}$", HALF, {}, 1.0),
        ("$\\frac{1}{3}$", HALF, {}, 0.0),
        (chat("$\\boxed{x^2+2x+1}$"), "$(x+1)^2$", {}, 1.0),
        ("", HALF, {}, 0.0),
        ("no maths here", HALF, {}, 0.0),
        ("$\\frac{1}{2}$ 答案", HALF, {}, 1.0),  # unicode text around the answer
        ("$0.5$", None, {}, None),  # missing reference
        ("$0.5$", "not maths at all", {}, None),  # unparsable reference: not applicable
        ("<answer>1/2</answer> then 7", "0.5", {"answer_tag": "answer"}, 1.0),
        ("1/2", "0.5", {"answer_tag": "answer"}, 0.0),  # no block
    ],
)
def test_math_verify(completion, reference, params, expected):
    assert score_one("math_verify", completion, {"answer": reference}, **params) == expected


def test_math_verify_off_the_main_thread_runs_without_signals():
    reward = build_reward("math_verify")
    results = []
    worker = threading.Thread(target=lambda: results.append(reward(prompts=["Q"], completions=["$0.5$"], answer=[HALF])))
    worker.start()
    worker.join()
    assert results == [[1.0]]


# ---------------------------------------------------------------- regex


@pytest.mark.parametrize(
    ("completion", "params", "expected"),
    [
        ("the answer is 42", {"pattern": r"\d+"}, 1.0),
        ("the answer is 42", {"pattern": r"\d+", "mode": "match"}, 0.0),
        ("42 it is", {"pattern": r"\d+", "mode": "match"}, 1.0),
        ("42 it is", {"pattern": r"\d+", "mode": "fullmatch"}, 0.0),
        ("42", {"pattern": r"\d+", "mode": "fullmatch"}, 1.0),
        ("ANSWER", {"pattern": "answer"}, 0.0),
        ("ANSWER", {"pattern": "answer", "flags": ["IGNORECASE"]}, 1.0),
        ("a\nb", {"pattern": "a.b"}, 0.0),
        ("a\nb", {"pattern": "a.b", "flags": ["DOTALL"]}, 1.0),
        (chat("42"), {"pattern": r"^\d+$"}, 1.0),
        ("", {"pattern": r"\d"}, 0.0),
        ("", {"pattern": r"^$", "score": 0.5}, 0.5),
        ("I'm sorry", {"pattern": "sorry", "score": -1.0}, -1.0),  # a penalty
        ("fine", {"pattern": "sorry", "score": -1.0, "no_match_score": 0.2}, 0.2),
        ("猫が好き", {"pattern": "猫"}, 1.0),
    ],
)
def test_regex(completion, params, expected):
    assert score_one("regex", completion, **params) == expected


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"pattern": "(unclosed"}, "not a valid regular expression"),
        ({}, "pattern"),  # required
        ({"pattern": "x", "flags": ["NOPE"]}, "flags"),
        ({"pattern": "x", "mode": "find"}, "mode"),
    ],
)
def test_regex_bad_params(params, message):
    with pytest.raises(RewardConfigError, match=message):
        build_reward("regex", **params)


# ---------------------------------------------------------------- json_valid

SCHEMA = {"type": "object", "properties": {"answer": {"type": "integer"}}, "required": ["answer"]}


@pytest.mark.parametrize(
    ("completion", "params", "expected"),
    [
        ('{"answer": 4}', {}, 1.0),
        ("[1, 2]", {}, 1.0),
        ("  42  ", {}, 1.0),
        ("{answer: 4}", {}, 0.0),
        ("", {}, 0.0),
        (chat('{"a": 1}'), {}, 1.0),
        ('{"名前": "猫"}', {}, 1.0),
        ('{"answer": 4}', {"schema": SCHEMA}, 1.0),
        ('{"answer": "4"}', {"schema": SCHEMA}, 0.0),
        ('{"answer": "4"}', {"schema": SCHEMA, "schema_mismatch_score": 0.5}, 0.5),
        ("not json", {"schema": SCHEMA, "schema_mismatch_score": 0.5}, 0.0),
        ('Here:\n```json\n{"answer": 4}\n```\nDone.', {"extract": "code_block", "schema": SCHEMA}, 1.0),
        ('{"answer": 4}', {"extract": "code_block"}, 0.0),  # no code block
        ('<answer>{"answer": 4}</answer>', {"extract": "answer_block"}, 1.0),
        ('<answer>{"answer": 4}</answer>', {}, 0.0),  # tags around it: not JSON
    ],
)
def test_json_valid(completion, params, expected):
    assert score_one("json_valid", completion, **params) == expected


def test_json_valid_rejects_an_invalid_schema():
    with pytest.raises(RewardConfigError, match="not a valid JSON Schema"):
        build_reward("json_valid", schema={"type": "no-such-type"})


# ---------------------------------------------------------------- repetition_penalty


@pytest.mark.parametrize(
    ("completion", "params", "expected"),
    [
        ("a b c d", {"ngram_size": 2}, 0.0),
        ("a a a a a", {"ngram_size": 2}, -0.75),  # 4 bigrams, 1 unique: (1 - 1/4) * -1
        ("a b a b a b", {"ngram_size": 2}, -0.6),  # 5 bigrams, 2 unique
        ("A a A a", {"ngram_size": 1}, -0.75),  # lowercased: 4 words, 1 unique
        ("a a a a a", {"ngram_size": 2, "max_penalty": -0.5}, -0.375),
        ("a b", {"ngram_size": 3}, 0.0),  # too short
        ("", {}, 0.0),
        (chat("x x x x"), {"ngram_size": 1}, -0.75),
        ("猫 猫 猫 猫", {"ngram_size": 1}, -0.75),
    ],
)
def test_repetition_penalty_words(completion, params, expected):
    assert score_one("repetition_penalty", completion, **params) == pytest.approx(expected)


def test_repetition_penalty_tokens():
    reward = build_reward("repetition_penalty", ngram_size=2, unit="tokens")
    assert reward(prompts=["Q"] * 2, completions=["", ""], completion_ids=[[1, 2, 3, 4], [5, 5, 5, 5, 5]]) == [0.0, -0.75]
    with pytest.raises(RewardConfigError, match="completion_ids"):
        reward(prompts=["Q"], completions=["x"])
    with pytest.raises(RewardConfigError, match="max_penalty"):
        build_reward("repetition_penalty", max_penalty=0.5)


# ---------------------------------------------------------------- overlong_penalty


@pytest.mark.parametrize(
    ("length", "expected"),
    [(0, 0.0), (80, 0.0), (81, -0.05), (90, -0.5), (100, -1.0), (101, -1.0)],
)
def test_overlong_penalty(length, expected):
    reward = build_reward("overlong_penalty", max_completion_length=100, cache_length=20)
    assert reward(prompts=["Q"], completions=[chat("x")], completion_ids=[[7] * length]) == [pytest.approx(expected)]


def test_overlong_penalty_without_cache_is_a_hard_limit_and_checks_params():
    reward = build_reward("overlong_penalty", max_completion_length=4)
    assert reward(prompts=["Q"] * 2, completions=["", ""], completion_ids=[[1] * 4, [1] * 5]) == [0.0, -1.0]
    with pytest.raises(RewardConfigError, match="cache_length .* must be less"):
        build_reward("overlong_penalty", max_completion_length=10, cache_length=10)
    with pytest.raises(RewardConfigError, match="max_completion_length"):
        build_reward("overlong_penalty")
    with pytest.raises(RewardConfigError, match="completion_ids"):
        reward(prompts=["Q"], completions=["x"])


# ---------------------------------------------------------------- isolated (worker processes, timeout)

SLOW_REWARDS = '''
import time

def slow_when_told(prompts, completions, **kwargs):
    scores = []
    for completion in completions:
        if completion == "hang":
            time.sleep(60)
        scores.append(float(len(completion)))
    return scores
'''


def test_isolated_scores_in_workers_and_kills_a_hung_batch(tmp_path: Path, monkeypatch):
    (tmp_path / "slow_rewards.py").write_text(SLOW_REWARDS)
    monkeypatch.chdir(tmp_path)
    reward = build_reward("isolated", reward="./slow_rewards.py:slow_when_told", timeout=2, workers=2)
    assert reward.__name__ == "slow_when_told"
    assert pickle.loads(pickle.dumps(reward)).pool is None
    try:
        # Split over 2 workers, back in order; TRL's loggers (not picklable) stay behind.
        assert reward(prompts=["Q"] * 3, completions=["a", "bb", "ccc"], log_metric=print) == [1.0, 2.0, 3.0]
        with pytest.raises(TimeoutError, match="within 2 s; its worker processes were stopped"):
            reward(prompts=["Q"] * 2, completions=["hang", "ok"])
        assert reward.pool is None
        assert reward(prompts=["Q"], completions=["ok"]) == [2.0]  # fresh workers
    finally:
        reward.stop()


def test_isolated_reports_bad_inner_rewards_before_starting_workers():
    with pytest.raises(RewardConfigError, match='unknown reward "nope"'):
        build_reward("isolated", reward="nope")
    with pytest.raises(RewardConfigError, match='has no parameter "bogus"'):
        build_reward("isolated", reward="regex", params={"pattern": "x", "bogus": 1})


# ---------------------------------------------------------------- zero-spread statistic


@pytest.mark.parametrize(
    ("scores", "group_size", "expected"),
    [
        ([1, 1, 0, 1, 2, 2], 2, 2 / 3),
        ([0.0, 0.0, 0.0, 0.0], 4, 1.0),
        ([0.0, 1.0, 0.0, 1.0], 2, 0.0),
        ([float("nan"), 1.0, 1.0, 2.0], 2, 0.5),  # NaN (None from the reward) is skipped
        ([float("nan"), float("nan"), 1.0, 2.0], 2, 0.0),  # an all-NaN group does not count
        ([], 2, None),
    ],
)
def test_zero_spread_fraction(scores, group_size, expected):
    assert zero_spread_fraction(scores, group_size) == (expected if expected is None else pytest.approx(expected))


@pytest.mark.parametrize(
    "name,params",
    [
        ("exact_match", {}),
        ("numeric_match", {}),
        ("math_verify", {}),
        ("regex", {"pattern": "x"}),
        ("json_valid", {"schema": SCHEMA}),
        ("repetition_penalty", {}),
        ("overlong_penalty", {"max_completion_length": 8}),
        ("http", {"url": "http://127.0.0.1:9/score"}),
        ("reward_model", {"model_name_or_path": "/nonexistent"}),
    ],
)
def test_rewards_pickle(name, params):
    reward = build_reward(name, **params)
    assert pickle.loads(pickle.dumps(reward)).__name__ == reward.__name__
