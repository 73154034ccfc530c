"""The agent keys through the CLI: validate and train stop alike on the same mistake; eval, rewards --generate
and probe run the config's tools in TRL's tool loop and count the calls."""

from __future__ import annotations

import json
import re

import pytest
import yaml
from typer.testing import CliRunner

from agent_fixtures import agent_config, agent_files, tool_task_files
from grpokit.cli import app

AGENT_MISTAKES = {
    "a tool without a docstring": ({"tools": ["tools.py:multiply", "tools.py:no_docstring"]}, "tools.py:no_docstring"),
    "a template that cannot call tools": ({"model_id": "builtin:tiny", "tools": ["tools.py:multiply"]}, "chat_template:"),
    "an environment without reset": ({"environment": "tools.py:NoReset", "rewards": ["rw.py:has_answer"]}, "has no reset method"),
    "reset without the dataset's columns": ({"environment": "tools.py:Strict"}, "does not take the dataset column(s)"),
}


def error_block(output: str) -> str:
    """The error message as printed (from its first line to the end), without the log lines before it."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.lower().startswith("error"))
    return "\n".join(lines[start:])


@pytest.mark.slow
@pytest.mark.parametrize("mistake", list(AGENT_MISTAKES))
def test_validate_and_train_stop_alike_on_an_agent_mistake(tmp_path, monkeypatch, mistake):
    keys, expected = AGENT_MISTAKES[mistake]
    agent_files(tmp_path)
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(agent_config(tmp_path, **keys)), encoding="utf-8")
    checked = CliRunner().invoke(app, ["validate", str(path)], terminal_width=400)
    trained = CliRunner().invoke(app, ["train", str(path)], terminal_width=400)
    assert checked.exit_code == trained.exit_code == 2, checked.output + trained.output
    assert expected in checked.output
    assert error_block(checked.output) == error_block(trained.output)
    assert not (tmp_path / "out" / "metrics.jsonl").exists()


TOOL_COMMANDS = {
    "eval": ["eval", "--model", "builtin:tiny-chat", "--split", "train", "--num-samples", "2", "--output", "ev"],
    "rewards --generate": ["rewards", "--generate", "--rows", "8"],
    "probe": ["probe", "--rows", "8", "--samples", "2", "--output", "probe.json"],
}


@pytest.mark.slow
@pytest.mark.parametrize("command", list(TOOL_COMMANDS))
def test_eval_rewards_and_probe_run_the_tool_loop_and_count_the_calls(tmp_path, monkeypatch, command):
    agent_files(tmp_path)
    data = tool_task_files(tmp_path)  # builtin:tiny-chat calls multiply on these prompts
    monkeypatch.chdir(tmp_path)
    config = agent_config(tmp_path, tools=["tools.py:multiply"], train_dataset_path=str(data), max_completion_length=64)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    argv = TOOL_COMMANDS[command]
    result = CliRunner().invoke(app, [argv[0], "c.yaml", *argv[1:]], terminal_width=400)
    assert result.exit_code == 0, result.output
    counts = [tuple(map(int, found)) for found in re.findall(r"tool loop: (\d+) tool calls? in (\d+) completions", result.output)]
    assert sum(calls for calls, _ in counts) > 0, result.output
    assert sum(completions for _, completions in counts) == (8 if command == "rewards --generate" else 16)
    if command == "eval":
        samples = [json.loads(line) for line in (tmp_path / "ev" / "eval_samples.jsonl").read_text().splitlines()]
        called = [s["completion"] for s in samples if any(m.get("tool_calls") for m in s["completion"])]
        assert called and all(m["content"].isdigit() for c in called for m in c if m["role"] == "tool")  # the product
