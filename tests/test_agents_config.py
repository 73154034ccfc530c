"""The agent keys: tools, environments, rollout functions and chat templates resolved and checked before any weights load."""

from __future__ import annotations

import asyncio
import sys

import pytest

from agent_fixtures import agent_config, agent_files
from grpokit.config.loading import load_config
from grpokit.errors import ConfigError, RunError
from grpokit.model.tool_loop import _call_tools, check_tool_template
from grpokit.rewards.agent import resolve_agent
from grpokit.rewards.policy import AsyncGuardedReward, guard_reward


def load(tmp_path, **keys):
    return load_config(data={**agent_config(tmp_path, **keys)}, cuda_available=False)


@pytest.fixture
def files(tmp_path, monkeypatch):
    agent_files(tmp_path)
    monkeypatch.chdir(tmp_path)  # relative paths in a config given as data start at the current directory
    return tmp_path


def test_tools_and_an_environment_resolve_for_grpotrainer(files):
    agent = resolve_agent(load(files, tools=["tools.py:multiply", "tools.py:add"], environment="tools.py:Counter",
                               environment_args={"start": 2}))  # fmt: skip
    kwargs = agent.trainer_kwargs()
    assert [tool.__name__ for tool in kwargs["tools"]] == ["multiply", "add"]
    assert agent.environment_rewards == ("Counter",)
    environment = kwargs["environment_factory"]()
    assert environment.reset(prompt="p", grpokit_row=3) == " Count up." and environment.increment(3) == 5
    assert [tool.__name__ for tool in agent.all_tools()] == ["multiply", "add", "increment"]


@pytest.mark.parametrize(
    ("tool", "expected"),
    [("tools.py:no_docstring", "no docstring"), ("tools.py:no_hint", "a"), ("tools.py:missing", 'has no attribute "missing"')],
)
def test_a_tool_whose_schema_cannot_build_is_a_config_error_naming_it(files, tool, expected):
    with pytest.raises(ConfigError) as caught:
        resolve_agent(load(files, tools=["tools.py:multiply", tool]))
    assert tool in caught.value.what and expected in caught.value.what
    assert "key tools[1]" in caught.value.where and caught.value.fix and caught.value.exit_code == 2


def test_an_environment_needs_reset_and_a_reward_source(files):
    with pytest.raises(ConfigError, match="has no reset method"):
        resolve_agent(load(files, environment="tools.py:NoReset"))
    with pytest.raises(ConfigError, match="could not be built with environment_args"):
        resolve_agent(load(files, environment="tools.py:Counter", environment_args={"stop": 1}))
    config = load(files, environment="tools.py:Counter", rewards=None)
    assert config.reward_specs == ()  # with an environment, no default rewards: its get_reward scores
    assert resolve_agent(config).environment_rewards == ("Counter",)


def test_a_rollout_func_must_take_prompts_and_trainer(files):
    (files / "roll.py").write_text("def good(prompts, trainer):\n    return {}\n\ndef bad(prompts):\n    return {}\n")
    assert resolve_agent(load(files, rollout_func="roll.py:good")).trainer_kwargs()["rollout_func"].__name__ == "good"
    with pytest.raises(ConfigError, match="fn\\(prompts, trainer\\)"):
        resolve_agent(load(files, rollout_func="roll.py:bad"))


def test_chat_template_by_trl_name_or_file(files):
    config = load(files, chat_template="qwen2_5")
    assert config.options.chat_template.endswith("trl/chat_templates/qwen2_5.jinja")
    (files / "mine.jinja").write_text("{{ messages }}")
    assert load(files, chat_template="mine.jinja").options.chat_template == str((files / "mine.jinja").resolve())
    with pytest.raises(ConfigError) as caught:
        load(files, chat_template="qwen25")
    assert "qwen2_5" in caught.value.fix and "chat_template" in caught.value.where


def test_an_environment_without_data_needs_max_steps(files):
    with pytest.raises(ConfigError, match="max_steps is not set"):
        load(files, environment="tools.py:Counter", train_dataset_path=None, max_steps=-1)
    assert load(files, environment="tools.py:Counter", train_dataset_path=None, max_steps=3).options.environment
    with pytest.raises(ConfigError, match="several environments need a dataset"):
        load(files, environment={"a": "tools.py:Counter"}, train_dataset_path=None)
    with pytest.raises(ConfigError, match="no training data"):
        load(files, train_dataset_path=None)


def test_environment_args_per_environment_and_dynamic_sampling_refused(files):
    with pytest.raises(ConfigError, match="not environments"):
        load(files, environment={"count": "tools.py:Counter"}, environment_args={"start": 1})
    with pytest.raises(ConfigError, match="dynamic_sampling does not work with tools"):
        load(files, tools=["tools.py:multiply"], dynamic_sampling=True)


def test_a_template_that_cannot_call_tools_is_an_error_naming_chat_template(files):
    from grpokit.model.loading import load_tokenizer

    plain = load_tokenizer(load(files, model_id="builtin:tiny").options)  # ChatML without tools
    with pytest.raises(ConfigError) as caught:
        check_tool_template(plain, environment=False, source="c.yaml")
    assert "cannot call tools" in caught.value.what and "chat_template:" in caught.value.fix
    fixed = load_tokenizer(load(files, model_id="builtin:tiny", chat_template="qwen2_5").options)
    check_tool_template(fixed, environment=True, source="c.yaml")
    assert getattr(fixed, "response_template", None) is None  # the check leaves the tokenizer as it was


def test_reset_receives_the_row_columns_and_each_row_its_environment(files):
    agent_files(files, environments=["count", "echo"])
    config = load(files, environment={"count": "tools.py:Counter", "echo": "tools.py:Echo"})
    agent = resolve_agent(config)
    rows = [{"prompt": [{"role": "user", "content": "Q"}], "answer": "7", "level": i, "environment": e, "grpokit_row": i}
            for i, e in enumerate(["count", "echo", "count"])]  # fmt: skip
    resets = sys.modules[agent.environment_factory["count"].args[0].__module__].RESETS
    resets.clear()
    prepare = agent.rollout_preparer(rows)
    planned = [prepare(index, 0) for index in range(3)]
    assert [name for name, _ in resets] == ["Counter", "Echo", "Counter"]
    assert resets[0][1] == {"prompt": rows[0]["prompt"], "answer": "7", "level": 0}  # no grpokit_row, no environment
    assert planned[0][0][-1]["content"] == "Q Count up." and planned[1][0][-1]["content"] == "Q"
    assert [tool.__name__ for tool in planned[1][1]] == ["echo"]


def test_a_tool_that_raises_is_a_counted_failure_and_an_async_tool_runs(files):
    sys.path.insert(0, str(files))
    try:
        import tools
    finally:
        sys.path.remove(str(files))
    calls = [{"type": "function", "function": {"name": name, "arguments": {"a": 2, "b": 3} if name != "broken" else {"a": 1}}}
             for name in ("multiply", "broken", "add", "nowhere")]  # fmt: skip
    messages, made, failed = _call_tools(calls, {f.__name__: f for f in (tools.multiply, tools.broken, tools.add)})
    assert (made, failed) == (4, 2)
    assert [m["content"] for m in messages] == ["6", "{'error': 'the service is down'}", "5", "{'error': 'Tool nowhere not found.'}"]


def test_an_async_reward_keeps_the_on_error_policy():
    async def judge(prompts, completions, **kwargs):
        if any("bad" in c for c in completions):
            raise ValueError("judge unreachable")
        return [1.0 for _ in completions]

    judge.required_columns = frozenset()
    zero = guard_reward(judge, "judge", "zero")
    assert isinstance(zero, AsyncGuardedReward)
    assert asyncio.run(zero(prompts=["p", "p"], completions=["ok", "bad"], grpokit_row=[4, 5])) == [1.0, 0.0]
    assert zero.failures == 1
    strict = guard_reward(judge, "judge", "raise")
    with pytest.raises(RunError, match="dataset row 5"):
        asyncio.run(strict(prompts=["p", "p"], completions=["ok", "bad"], grpokit_row=[4, 5]))


def test_reset_must_take_the_dataset_columns(files):
    columns = ["prompt", "answer", "level", "grpokit_row"]
    agent = resolve_agent(load(files, environment="tools.py:Strict"))
    with pytest.raises(ConfigError) as caught:
        agent.check_reset_columns(columns, source="c.yaml", data="train dataset")
    assert "does not take the dataset column(s) ['prompt', 'answer']" in caught.value.what
    assert "key environment; train dataset" in caught.value.where and "**kwargs" in caught.value.fix
    needs = resolve_agent(load(files, environment={"a": "tools.py:NeedsTarget", "b": "tools.py:Counter"}))
    with pytest.raises(ConfigError, match=r"needs \['target'\], which the dataset has no column for") as caught:
        needs.check_reset_columns([*columns, "environment"], source="c.yaml", data="train dataset")
    assert "key environment.a" in caught.value.where
    needs.check_reset_columns([*columns, "target", "environment"], source="c.yaml", data="train dataset")
    resolve_agent(load(files, environment="tools.py:Counter")).check_reset_columns(columns, source="c.yaml", data="d")


def test_trls_experimental_warning_becomes_one_grpokit_line(files):
    assert resolve_agent(load(files, tools=["tools.py:multiply"])).experimental_notice() is None
    notice = resolve_agent(load(files, environment="tools.py:Counter")).experimental_notice()
    assert notice.startswith("environment: use TRL's environment_factory, which TRL marks experimental")


def test_without_a_dataset_reset_gets_trls_placeholder_prompt(files):
    from grpokit.data.loading import LoadedData
    from grpokit.model.loading import load_tokenizer
    from grpokit.pipeline import check_agent

    config = load(files, environment="tools.py:Strict", train_dataset_path=None, max_steps=2)
    no_data = LoadedData(train=None, test=None, description="")
    with pytest.raises(ConfigError, match=r"reset\(level: int\) needs \['level'\], .*its columns: \['prompt'\]") as caught:
        check_agent(config, resolve_agent(config), load_tokenizer(config.options), no_data)
    assert "placeholder rows" in caught.value.where
    counter = load(files, environment="tools.py:Counter", train_dataset_path=None, max_steps=2)
    check_agent(counter, resolve_agent(counter), load_tokenizer(counter.options), no_data)
