"""The addition task: problem generation, the train / held-out split, answer extraction and scoring."""

from __future__ import annotations

import pytest

from grpokit.tasks import addition
from grpokit.tasks.addition import AdditionProblem


def test_problem_derives_prompt_and_answer():
    problem = AdditionProblem(12, 34)
    assert (problem.prompt, problem.answer) == ("12+34=", "46")
    assert AdditionProblem(99, 99).answer == "198"
    assert AdditionProblem(0, 0).prompt == "0+0="


def test_split_covers_every_pair_once_and_is_symmetric():
    split = addition.split_pairs()
    all_pairs = {(a, b) for a in range(100) for b in range(100)}
    assert set(split.train) | set(split.heldout) == all_pairs
    assert not set(split.train) & set(split.heldout)
    assert 800 <= len(split.heldout) <= 1200  # about one pair in ten
    # 12+34 and 34+12 fall on the same side, so the held-out sums were never seen in either order.
    assert all((b, a) in set(split.heldout) for a, b in split.heldout)


def test_make_problems_is_seeded_and_never_held_out():
    first = addition.make_problems(500, seed=7)
    assert first == addition.make_problems(500, seed=7)
    assert first != addition.make_problems(500, seed=8)
    assert len(first) == 500
    assert not any(addition.is_heldout_pair(p.a, p.b) for p in first)
    assert all(0 <= p.a <= 99 and 0 <= p.b <= 99 for p in first)


def test_make_problems_respects_the_operand_range():
    problems = addition.make_problems(200, seed=0, low=10, high=19)
    assert all(10 <= p.a <= 19 and 10 <= p.b <= 19 for p in problems)
    assert addition.make_problems(0, seed=0) == []


@pytest.mark.parametrize("low, high", [(5, 4), (-1, 10)])
def test_make_problems_rejects_bad_ranges(low, high):
    with pytest.raises(ValueError, match="low"):
        addition.make_problems(3, seed=0, low=low, high=high)


def test_heldout_problems_are_fixed_distinct_and_prefix_stable():
    heldout = addition.heldout_problems()
    assert len(heldout) == 200
    assert len({(p.a, p.b) for p in heldout}) == 200
    assert all(addition.is_heldout_pair(p.a, p.b) for p in heldout)
    assert addition.heldout_problems(50) == heldout[:50]
    with pytest.raises(ValueError, match="held-out pairs"):
        addition.heldout_problems(len(addition.split_pairs().heldout) + 1)


@pytest.mark.parametrize(
    "completion, expected",
    [
        ("46", "46"),
        ("46<|endoftext|>", "46"),
        ("46x", "46"),
        ("46 and more 12", "46"),
        (" 46", "46"),
        ("\n46", "46"),
        ("", ""),
        ("   ", ""),
        ("x46", ""),
        ("-46", ""),
        ("046", "046"),
        ("4 6", "4"),
        ("٤٦", ""),  # Arabic-Indic digits are not ASCII digits
        ("46✓", "46"),
        ([{"role": "assistant", "content": "46"}], "46"),
        ([{"role": "assistant", "content": " 46<|im_end|>"}], "46"),
        ([{"role": "assistant", "content": ""}], ""),
        ([], ""),
        # separate messages are separate lines, as every reward reads them (grpokit.rewards.text_of)
        ([{"role": "assistant", "content": "4"}, {"role": "assistant", "content": "6"}], "4"),
        ([{"role": "assistant", "content": [{"type": "text", "text": "46"}]}], "46"),
        ([{"role": "assistant", "content": None}], ""),
    ],
)
def test_extract_answer(completion, expected):
    assert addition.extract_answer(completion) == expected


@pytest.mark.parametrize(
    "completion, answer, expected",
    [
        ("46", "46", True),
        ("46<|endoftext|>", "46", True),
        ("46x", "46", True),
        (" 46", "46", True),
        ("", "46", False),
        ("4", "46", False),
        ("460", "46", False),
        ("046", "46", False),
        ("", "", False),  # an empty completion is never correct
        ([{"role": "assistant", "content": "146"}], "146", True),
        ([{"role": "assistant", "content": "145"}], "146", False),
    ],
)
def test_is_correct(completion, answer, expected):
    assert addition.is_correct(completion, answer) is expected


@pytest.mark.parametrize("completion", [46, None, ["46"]])
def test_extract_answer_rejects_other_types(completion):
    with pytest.raises(TypeError):
        addition.extract_answer(completion)


class _TokenizerStub:
    """Only what greedy_accuracy reads before it checks the problem list."""

    pad_token_id = 0
    padding_side = "right"


def test_greedy_accuracy_rejects_empty_problem_list():
    with pytest.raises(ValueError, match="at least one"):
        addition.greedy_accuracy(object(), _TokenizerStub(), [])
