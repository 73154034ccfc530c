"""Building rewards from config: names, params, user functions by path, the reward set."""

from __future__ import annotations

import pickle
import textwrap
import uuid
from pathlib import Path

import pydantic
import pytest

from grpokit.errors import DataError, RewardConfigError
from grpokit.rewards import (
    RewardSpec,
    build_reward,
    build_rewards,
    default_reward_specs,
    run_rewards_on_rows,
)

USER_REWARDS = '''
def shouty(prompts, completions, bonus=0.0, **kwargs):
    """1.0 for an all-caps completion, plus bonus."""
    return [float(c.isupper()) + bonus for c in completions]

def exact_match(prompts, completions, answer, **kwargs):
    return [float(c.strip() == str(a)) for c, a in zip(completions, answer)]

def no_kwargs(prompts, completions):
    return [0.0 for _ in completions]

async def later(prompts, completions, **kwargs):
    return [0.0 for _ in completions]

NOT_CALLABLE = 3
'''


@pytest.fixture
def rewards_file(tmp_path: Path) -> Path:
    path = tmp_path / "my_rewards.py"
    path.write_text(USER_REWARDS)
    return path


@pytest.fixture
def rewards_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """An importable package with a unique name (modules stay cached in sys.modules between tests)."""
    package = f"grpokit_test_pkg_{uuid.uuid4().hex[:8]}"
    (tmp_path / package).mkdir()
    (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / package / "scoring.py").write_text(USER_REWARDS)
    monkeypatch.syspath_prepend(str(tmp_path))
    return package


# ---------------------------------------------------------------- RewardSpec


def test_spec_extra_keys_are_params():
    spec = RewardSpec.model_validate({"name": "length", "weight": 0.5, "target_length": 10, "unit": "chars"})
    assert (spec.name, spec.weight, spec.on_error) == ("length", 0.5, "raise")
    assert spec.params == {"target_length": 10, "unit": "chars"}


def test_spec_bare_string_is_a_name():
    assert RewardSpec.model_validate("rouge_l").params == {}
    assert RewardSpec.model_validate("rouge_l").name == "rouge_l"


@pytest.mark.parametrize("bad", [{"name": "format", "on_error": "ignore"}, {"name": ""}, {"weight": 1.0}])
def test_spec_rejects_bad_entries(bad):
    with pytest.raises(pydantic.ValidationError):
        RewardSpec.model_validate(bad)


def test_default_specs_are_the_aws_samples_three():
    specs = default_reward_specs()
    assert [(s.name, s.weight, s.params) for s in specs] == [
        ("rouge_l", 1.0, {}),
        ("length", 1.0, {}),
        ("format", 1.0, {}),
    ]


# ---------------------------------------------------------------- build_reward errors


@pytest.mark.parametrize(
    ("name", "suggestion"), [("rouge", "rouge_l"), ("formt", "format"), ("lenght", "length")]
)
def test_unknown_name_suggests_the_closest(name, suggestion):
    with pytest.raises(RewardConfigError) as caught:
        build_reward(name)
    assert f'unknown reward "{name}"' in caught.value.message
    assert repr(suggestion) in caught.value.message
    assert caught.value.exit_code == 2


def test_unknown_param_names_reward_param_valid_ones_and_closest():
    with pytest.raises(RewardConfigError) as caught:
        build_reward("rouge_l", refernce_column="gold")
    message = caught.value.message
    assert 'reward "rouge_l" has no parameter "refernce_column"' in message
    assert "reference_column, score, use_stemmer, tokenizer" in message
    assert 'did you mean "reference_column"?' in message


def test_invalid_value_names_the_param():
    with pytest.raises(RewardConfigError, match=r"score='prec'"):
        build_reward("rouge_l", score="prec")


# ---------------------------------------------------------------- user rewards


@pytest.mark.parametrize("form", ["my_rewards.py:shouty", "./my_rewards.py:shouty", "ABSOLUTE"])
def test_user_reward_from_file_path(rewards_file: Path, form: str):
    name = f"{rewards_file}:shouty" if form == "ABSOLUTE" else form
    reward_set = build_rewards([RewardSpec(name=name, bonus=0.5)], base_dir=rewards_file.parent)
    assert reward_set.names == ["shouty"]
    assert reward_set.funcs[0](prompts=["Q", "Q"], completions=["YES", "no"], grpokit_row=[0, 1]) == [
        1.5,
        0.5,
    ]


def test_user_file_path_relative_to_cwd_without_base_dir(rewards_file: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(rewards_file.parent)
    assert build_reward("my_rewards.py:shouty")(prompts=["Q"], completions=["OK"]) == [1.0]


@pytest.mark.parametrize("separator", [":", "."])
def test_user_reward_from_dotted_path(rewards_package: str, separator: str):
    reward = build_reward(f"{rewards_package}.scoring{separator}exact_match")
    assert reward.__name__ == "exact_match"
    assert reward.required_columns == frozenset({"answer"})
    assert reward(prompts=["Q", "Q"], completions=[" 4 ", "5"], answer=[4, 4]) == [1.0, 0.0]


def test_user_module_next_to_the_config_is_found(tmp_path: Path):
    module = f"grpokit_test_mod_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(USER_REWARDS)
    reward_set = build_rewards([RewardSpec(name=f"{module}:shouty")], base_dir=tmp_path)
    assert reward_set.funcs[0](prompts=["Q"], completions=["HI"]) == [1.0]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("missing.py:shouty", "does not exist"),
        ("my_rewards.py:shoutyy", 'has no attribute "shoutyy"'),
        ("my_rewards.py:shoutyy", 'did you mean "shouty"?'),
        ("my_rewards.py:NOT_CALLABLE", "is not callable (it is the int 3)"),
        ("my_rewards.py:no_kwargs", "does not accept **kwargs"),
        ("my_rewards.py", "does not say which function"),
        ("grpokit_no_such_module_xyz:fn", "cannot be imported"),
    ],
)
def test_user_reward_errors_say_which(rewards_file: Path, name: str, expected: str):
    with pytest.raises(RewardConfigError) as caught:
        build_rewards([RewardSpec(name=name)], base_dir=rewards_file.parent)
    assert expected in caught.value.message
    assert "rewards[0]" in caught.value.message


def test_user_file_that_fails_to_import(tmp_path: Path):
    (tmp_path / "broken.py").write_text("import grpokit_no_such_dependency_xyz\n")
    with pytest.raises(RewardConfigError, match="raised ModuleNotFoundError"):
        build_rewards([RewardSpec(name="broken.py:fn")], base_dir=tmp_path)


def test_user_reward_unknown_param(rewards_file: Path):
    with pytest.raises(RewardConfigError) as caught:
        build_rewards([RewardSpec(name="my_rewards.py:shouty", bonsu=1.0)], base_dir=rewards_file.parent)
    assert 'has no parameter "bonsu"' in caught.value.message
    assert 'did you mean "bonus"?' in caught.value.message


def test_user_reward_declared_required_columns(tmp_path: Path):
    (tmp_path / "declared.py").write_text(
        textwrap.dedent(
            """
            def judge(prompts, completions, **kwargs):
                return [len(kwargs["rubric"][i]) * 0.0 for i, _ in enumerate(completions)]
            judge.required_columns = ["rubric"]
            """
        )
    )
    reward = build_rewards([RewardSpec(name="declared.py:judge")], base_dir=tmp_path)
    assert reward.required_columns == {"rubric": {"judge"}}


# ---------------------------------------------------------------- build_rewards


def test_build_default_rewards():
    reward_set = build_rewards(default_reward_specs())
    assert reward_set.names == ["rouge_l", "length", "format"]
    assert reward_set.weights == [1.0, 1.0, 1.0]
    assert reward_set.required_columns == {"answer": {"rouge_l"}}
    assert reward_set.failure_counts() == {"rouge_l": 0, "length": 0, "format": 0}


def test_duplicate_names_get_suffixes_trl_sees():
    from trl.trainer.utils import get_callable_name

    specs = [
        RewardSpec(name="rouge_l"),
        RewardSpec(name="rouge_l", score="f1", reference_column="gold"),
        RewardSpec(name="length"),
        RewardSpec(name="rouge_l", weight=2.0),
    ]
    reward_set = build_rewards(specs)
    assert reward_set.names == ["rouge_l", "rouge_l_2", "length", "rouge_l_3"]
    assert [get_callable_name(f) for f in reward_set.funcs] == reward_set.names
    assert reward_set.weights == [1.0, 1.0, 1.0, 2.0]
    assert reward_set.required_columns == {"answer": {"rouge_l", "rouge_l_3"}, "gold": {"rouge_l_2"}}


def test_build_error_names_the_entry():
    with pytest.raises(RewardConfigError) as caught:
        build_rewards([RewardSpec(name="length"), RewardSpec(name="format", partial=0.5)])
    assert "rewards[1] (name: format)" in caught.value.message


def test_no_rewards_is_an_error():
    with pytest.raises(RewardConfigError, match="no rewards"):
        build_rewards([])


def test_built_rewards_pickle():
    # TRL's async rollout worker pickles reward functions into a child process.
    reward_set = build_rewards(default_reward_specs())
    clones = pickle.loads(pickle.dumps(reward_set.funcs))
    kwargs = {"prompts": ["Q"], "completions": ["<think>a</think><answer>b</answer>"], "answer": ["b"]}
    assert [f(**kwargs) for f in clones] == [f(**kwargs) for f in reward_set.funcs]


# ---------------------------------------------------------------- run_rewards_on_rows


def test_run_rewards_on_rows_scores_and_weighted_total():
    reward_set = build_rewards(
        [RewardSpec(name="rouge_l", weight=2.0), RewardSpec(name="length", target_length=4, weight=0.5)]
    )
    rows = [
        {"prompt": "Q0", "answer": "a b", "grpokit_row": 0},
        {"prompt": "Q1", "answer": "a b", "grpokit_row": 1},
        {"prompt": "Q2", "answer": None, "grpokit_row": 2},
    ]
    results = run_rewards_on_rows(reward_set, rows, ["a b", "zz", "abcd"])
    # row 0: rouge 1.0, length 3 chars -> 1 - 1/4 = 0.75; total 2*1.0 + 0.5*0.75 = 2.375
    # row 1: rouge 0.0, length 2 -> 0.5; total 0.25
    # row 2: rouge None (no reference), length 4 -> 1.0; total 0.5
    assert results == [
        {"scores": {"rouge_l": 1.0, "length": 0.75}, "total": 2.375},
        {"scores": {"rouge_l": 0.0, "length": 0.5}, "total": 0.25},
        {"scores": {"rouge_l": None, "length": 1.0}, "total": 0.5},
    ]


def test_run_rewards_on_rows_passes_completion_ids_and_chat_completions():
    reward_set = build_rewards([RewardSpec(name="length", unit="tokens", target_length=2)])
    rows = [{"prompt": [{"role": "user", "content": "Q"}]}]
    results = run_rewards_on_rows(
        reward_set, rows, [[{"role": "assistant", "content": "ab"}]], completion_ids=[[5]]
    )
    assert results == [{"scores": {"length": 0.5}, "total": 0.5}]


def test_run_rewards_on_rows_all_none_total_is_none():
    reward_set = build_rewards([RewardSpec(name="rouge_l")])
    assert run_rewards_on_rows(reward_set, [{"prompt": "Q", "answer": None}], ["x"]) == [
        {"scores": {"rouge_l": None}, "total": None}
    ]


@pytest.mark.parametrize(
    ("rows", "completions", "expected"),
    [([{"prompt": "Q"}], ["a", "b"], "1 rows but 2 completions"), ([{"answer": "x"}], ["a"], 'no "prompt"')],
)
def test_run_rewards_on_rows_bad_input(rows, completions, expected):
    with pytest.raises(DataError, match=expected):
        run_rewards_on_rows(build_rewards(default_reward_specs()), rows, completions)
