"""The error policy TRL's calls go through: row column stripped, failures named or counted, outputs checked."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest

from grpokit.errors import RewardConfigError, RunError
from grpokit.rewards import GuardedReward, RewardSpec, build_reward, build_rewards


class Recorder:
    """A reward that records its kwargs and scores 1.0 per completion, raising on the text "boom"."""

    __name__ = "recorder"
    required_columns = frozenset()

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def __call__(self, prompts, completions, **kwargs):
        self.calls.append(kwargs)
        if "log_extra" in kwargs:
            kwargs["log_extra"]("seen", list(completions))
        if "boom" in completions:
            raise ValueError("cannot score boom")
        return [1.0 for _ in completions]


def fixed(scores):
    def reward(prompts, completions, **kwargs):
        return scores

    reward.__name__ = "fixed"
    reward.required_columns = frozenset()
    return reward


def guard(reward, on_error="raise", name=None) -> GuardedReward:
    return GuardedReward(reward, name or reward.__name__, on_error)


PROMPTS = ["P0", "P1", "P2"]


def test_grpokit_row_is_removed_before_the_reward_sees_kwargs():
    recorder = Recorder()
    scores = guard(recorder)(
        prompts=PROMPTS, completions=["a", "b", "c"], grpokit_row=[5, 6, 7], answer=[1, 2, 3]
    )
    assert scores == [1.0, 1.0, 1.0]
    assert recorder.calls == [{"answer": [1, 2, 3]}]


def test_raise_names_the_reward_and_the_row_and_chains():
    guarded = guard(Recorder(), name="judge")
    with pytest.raises(RunError) as caught:
        guarded(prompts=PROMPTS, completions=["ok", "boom", "ok"], grpokit_row=[10, 11, 12])
    error = caught.value
    assert 'reward "judge" failed on dataset row 11: ValueError: cannot score boom' in error.message
    assert 'prompt "P1", completion "boom"' in error.message
    assert isinstance(error.__cause__, ValueError)
    assert error.exit_code == 1


def test_raise_without_row_column_names_the_batch_item():
    with pytest.raises(RunError, match="item 2 of the batch"):
        guard(Recorder())(prompts=PROMPTS, completions=["ok", "ok", "boom"])


def always_fails(prompts, completions, **kwargs):
    raise KeyError("always")


always_fails.required_columns = frozenset()


def test_raise_shortens_long_prompts_and_shows_the_last_chat_message():
    prompt = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "why " * 500}]
    with pytest.raises(RunError) as caught:
        guard(always_fails)(
            prompts=[prompt], completions=[[{"role": "assistant", "content": "boom"}]], grpokit_row=[3]
        )
    message = caught.value.message
    assert 'prompt "why why' in message and '…", completion "boom"' in message and "be brief" not in message
    assert len(message) < 600


def test_zero_scores_failures_counts_them_and_warns_once(caplog):
    reward_set = build_rewards([RewardSpec(name="length", target_length=2), RewardSpec(name="rouge_l")])
    reward_set.funcs[0].reward = Recorder()  # swap in a failing reward, keep the policy under test
    reward_set.funcs[0].on_error = "zero"
    guarded = reward_set.funcs[0]
    with caplog.at_level(logging.WARNING, logger="grpokit.rewards"):
        assert guarded(prompts=PROMPTS, completions=["ok", "boom", "ok"], grpokit_row=[0, 1, 2]) == [
            1.0,
            0.0,
            1.0,
        ]
        assert guarded(prompts=PROMPTS, completions=["boom", "boom", "ok"], grpokit_row=[3, 4, 5]) == [
            0.0,
            0.0,
            1.0,
        ]
    assert reward_set.failure_counts() == {"length": 3, "rouge_l": 0}
    warnings = [r for r in caplog.records if r.name == "grpokit.rewards"]
    assert len(warnings) == 1
    assert 'reward "length" failed on dataset row 1' in warnings[0].getMessage()


def test_rerun_items_do_not_log_twice():
    logged = []
    recorder = Recorder()
    guarded = guard(recorder, on_error="zero")
    guarded(
        prompts=PROMPTS,
        completions=["ok", "boom", "ok"],
        log_extra=lambda column, values: logged.append(values),
    )
    assert logged == [["ok", "boom", "ok"]]  # the batch call logged; the three re-runs did not
    assert len(recorder.calls) == 4


def test_rerun_slices_per_completion_lists_only():
    recorder = Recorder()
    state = object()
    guard(recorder, on_error="zero")(
        prompts=["P0", "P1"],
        completions=["boom", "ok"],
        answer=["a0", "a1"],
        completion_ids=[[1], [2, 3]],
        trainer_state=state,
    )
    assert recorder.calls[2] == {"answer": ["a1"], "completion_ids": [[2, 3]], "trainer_state": state}


@pytest.mark.parametrize(
    ("returned", "expected"),
    [
        ([1, 0.5, None], [1.0, 0.5, None]),  # None means "not applicable" to TRL
        ([True, np.float32(0.25), np.int64(2)], [1.0, 0.25, 2.0]),
        ([-1.0, 0], [-1.0, 0.0]),
        (np.array([0.0, 1.0, 2.0]), [0.0, 1.0, 2.0]),
    ],
)
def test_valid_outputs_become_floats_or_none(returned, expected):
    completions = ["a", "b", "c"][: len(expected)]
    assert guard(fixed(returned))(prompts=PROMPTS[: len(expected)], completions=completions) == expected


@pytest.mark.parametrize("bad", ["high", math.inf, -math.inf, math.nan, np.float32("nan"), [1.0], {"score": 1}])
def test_non_numeric_score_names_reward_and_row(bad):
    with pytest.raises(RunError) as caught:
        guard(fixed([0.0, bad, 1.0]))(prompts=PROMPTS, completions=["a", "b", "c"], grpokit_row=[7, 8, 9])
    assert 'reward "fixed" failed on dataset row 8: TypeError: returned' in caught.value.message


def test_non_numeric_score_with_zero_is_counted():
    guarded = guard(fixed([0.5, "high", 1.0]), on_error="zero")
    assert guarded(prompts=PROMPTS, completions=["a", "b", "c"]) == [0.5, 0.0, 1.0]
    assert guarded.failures == 1


def test_a_nan_score_is_a_failure_not_a_silent_none():
    # TRL reads NaN as "not applicable": a reward that divides by zero would train on nothing, silently
    with pytest.raises(RunError, match=r'reward "fixed" failed on dataset row 5: TypeError: returned nan'):
        guard(fixed([0.5, math.nan, 1.0]))(prompts=PROMPTS, completions=["a", "b", "c"], grpokit_row=[4, 5, 6])
    counted = guard(fixed([math.nan, math.nan, 1.0]), on_error="zero")
    assert counted(prompts=PROMPTS, completions=["a", "b", "c"]) == [0.0, 0.0, 1.0] and counted.failures == 2


@pytest.mark.parametrize("on_error", ["raise", "zero"])
@pytest.mark.parametrize(("returned", "got"), [([1.0, 1.0], "2 scores"), (0.5, "float"), (None, "NoneType")])
def test_wrong_output_shape_always_raises(on_error, returned, got):
    with pytest.raises(RunError, match=f'reward "fixed" returned {got} for 3 completions'):
        guard(fixed(returned), on_error=on_error)(prompts=PROMPTS, completions=["a", "b", "c"])


@pytest.mark.parametrize("on_error", ["raise", "zero"])
def test_config_errors_from_the_reward_propagate_unchanged(on_error):
    guarded = guard(build_reward("rouge_l"), on_error=on_error)
    with pytest.raises(RewardConfigError, match='needs the dataset column "answer"'):
        guarded(prompts=["Q"], completions=["x"], solution=["x"], grpokit_row=[0])
    assert guarded.failures == 0


def batch_only_failure(prompts, completions, **kwargs):
    if len(completions) > 1:
        raise IndexError("batch bug")
    return [1.0]


batch_only_failure.required_columns = frozenset()


def test_failure_only_on_whole_batches():
    with pytest.raises(
        RunError, match=r"raised IndexError: batch bug on a batch of 2 \(dataset rows \[4, 5\]\)"
    ):
        guard(batch_only_failure)(prompts=["P0", "P1"], completions=["a", "b"], grpokit_row=[4, 5])
    guarded = guard(batch_only_failure, on_error="zero")
    assert guarded(prompts=["P0", "P1"], completions=["a", "b"]) == [1.0, 1.0]
    assert guarded.failures == 0
