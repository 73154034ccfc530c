"""--nproc 2 with tools and with an environment: real torchrun, gloo on the CPU; each step logged once.

The tool run offers builtin:tiny-chat a `multiply` that always raises (the model calls `multiply` on about
30% of its samples of the tool task's prompts): the run must count the failures in
`tools/failure_share` (TRL's `tools/failure_frequency`, renamed by grpokit), summed over both ranks by TRL,
and exit 0.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from agent_fixtures import agent_config, agent_files, tool_task_files

pytestmark = pytest.mark.slow

RUN_TIMEOUT_S = 600  # two processes on two shared cores


def run_train(directory: Path, config: dict) -> subprocess.CompletedProcess:
    path = directory / "c.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID"):
        env.pop(name, None)
    command = [sys.executable, "-m", "grpokit", "train", str(path), "--nproc", "2"]
    result = subprocess.run(command, cwd=directory, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    return result


def check_each_step_logged_once(directory: Path, result: subprocess.CompletedProcess, steps: int, *, experimental: int) -> list[dict]:
    lines = [json.loads(line) for line in (directory / "out" / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == list(range(1, steps + 1)), "rank 0 alone writes metrics.jsonl"
    console = result.stdout + result.stderr
    progress = [int(step) for step in re.findall(rf"\bstep (\d+)/{steps} \(", console)]  # at most one line per 10 s
    assert progress[-1:] == [steps] and len(progress) == len(set(progress)), console[-4000:]  # no step twice (no rank 1)
    assert console.count(f"trained {steps} steps") == 1
    assert console.count("experimental") == experimental  # TRL's warning for environment_factory: one grpokit line
    return lines


def test_nproc_2_with_a_tool_that_raises_counts_the_failures(tmp_path):
    data = tool_task_files(tmp_path)
    config = agent_config(
        tmp_path, tools=["failing.py:multiply"], train_dataset_path=str(data), rewards=["rouge_l"],
        max_steps=2, num_generations=4, per_device_train_batch_size=4, max_completion_length=40,
    )  # fmt: skip
    lines = check_each_step_logged_once(tmp_path, run_train(tmp_path, config), steps=2, experimental=0)
    assert sum(line["tools/calls_per_completion"] for line in lines) > 0, "builtin:tiny-chat called multiply"
    assert all(line["tools/failure_share"] == 1.0 for line in lines if line["tools/calls_per_completion"] > 0)


def test_nproc_2_with_an_environment(tmp_path):
    agent_files(tmp_path)
    config = agent_config(tmp_path, environment="tools.py:Counter", rewards=None, max_steps=2, per_device_train_batch_size=2)
    lines = check_each_step_logged_once(tmp_path, run_train(tmp_path, config), steps=2, experimental=1)
    assert all("rewards/Counter/mean" in line and "tools/calls_per_completion" in line for line in lines)


def test_nproc_2_reports_an_agent_mistake_once_before_starting_the_ranks(tmp_path):
    agent_files(tmp_path)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(agent_config(tmp_path, model_id="builtin:tiny", tools=["tools.py:multiply"])), encoding="utf-8")
    command = [sys.executable, "-m", "grpokit", "train", str(path), "--nproc", "2"]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False)
    assert result.returncode == 2, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stderr.count("cannot call tools") == 1 and "chat_template:" in result.stderr
    assert "torch.distributed" not in result.stderr and "rank" not in result.stderr.lower()
