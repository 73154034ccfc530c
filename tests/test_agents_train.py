"""Training with tools and environments on builtin:tiny-chat: TRL's tool metrics, get_reward as a reward, async rewards."""

from __future__ import annotations

import json
import sys

import pytest

from agent_fixtures import agent_config, agent_files
from grpokit.commands.validate import validate
from grpokit.config.loading import load_config
from grpokit.trainer import train

pytestmark = pytest.mark.slow


def metrics_of(directory):
    return [json.loads(line) for line in (directory / "out" / "metrics.jsonl").read_text().splitlines()]


def test_tools_an_environment_and_an_async_reward_train_and_validate_agrees(tmp_path, monkeypatch):
    agent_files(tmp_path)
    monkeypatch.chdir(tmp_path)
    config = load_config(
        data=agent_config(
            tmp_path,
            tools=["tools.py:multiply", "tools.py:broken", "tools.py:add"],
            environment="tools.py:Counter",
            rewards=["rw.py:has_answer", {"name": "rw.py:async_length"}, {"name": "rw.py:async_flaky", "on_error": "zero"}],
        ),
        cuda_available=False,
    )
    report = validate(config, trial_step=True)
    assert report.trial_step is not None and report.trial_step.model == "builtin:tiny-chat"
    assert report.trial_step.total_steps == 1
    assert report.reward_names[-1] == "Counter" and report.reward_weights[-1] == 1.0  # get_reward, as TRL adds it
    assert all(entry["scores"]["Counter"] == 0.0 for entry in report.reward_rows)  # right after reset: count = start
    assert any("TRL marks experimental" in note for note in report.notes)
    result = train(config)
    assert result.global_step == 1
    (step,) = metrics_of(tmp_path)
    # TRL's tools/call_frequency and tools/failure_frequency, renamed (grpokit.outputs.tool_metrics); no call, no share
    assert "tools/calls_per_completion" in step and "tools/call_frequency" not in step
    assert ("tools/failure_share" in step) == (step["tools/calls_per_completion"] > 0)
    assert "rewards/Counter/mean" in step  # the environment's get_reward is a reward
    assert "rewards/async_length/mean" in step and step["rewards/async_length/mean"] > 0
    assert step["rewards/async_flaky/failures"] > 0 and result.reward_failures["async_flaky"] > 0


def test_a_mixed_environment_dataset_sends_each_row_to_its_environment(tmp_path, monkeypatch):
    agent_files(tmp_path, environments=["count", "echo"])
    monkeypatch.chdir(tmp_path)
    config = load_config(
        data=agent_config(
            tmp_path, environment={"count": "tools.py:Counter", "echo": "tools.py:Echo"}, rewards=None, max_steps=2
        ),  # 2 steps of 2 prompts: every row once
        cuda_available=False,
    )
    train(config)
    resets = next(
        module for name, module in list(sys.modules.items())
        if name.startswith("grpokit_user_rewards.tools_") and module.__file__ == str((tmp_path / "tools.py").resolve())
    ).RESETS  # fmt: skip
    routed = {(name, row["level"]) for name, row in resets}
    assert routed == {("Counter", 0), ("Echo", 1), ("Counter", 2), ("Echo", 3)}  # rows 0, 2: count; 1, 3: echo
    assert all("environment" not in row and "grpokit_row" not in row and "answer" in row for _, row in resets)
    steps = metrics_of(tmp_path)
    assert [step["step"] for step in steps] == [1, 2]
    assert all("rewards/Counter/mean" in step and "rewards/Echo/mean" in step for step in steps)
