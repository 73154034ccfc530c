"""`grpokit demo --task tools`: the shipped config, a short demo's outputs and its tool metrics (metrics.jsonl and a
real MLflow server), the same figures on every run, and (slow) the demo's figure at seed 0."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from grpokit.commands.demo_tools import TOOLS_DEMO_SETTINGS, ToolsDemoOptions, run_tools_demo
from grpokit.config import load_config, read_yaml_file
from grpokit.tasks import tool_task

REPO = Path(__file__).resolve().parents[1]
DEMO_YAML = REPO / "examples" / "demo_tools.yaml"
SHORT = ToolsDemoOptions(heldout_size=8, eval_every=2, train_problems=32, sample_completions=2)
TOOL_KEYS = ("tools/calls_per_completion", "tools/failure_share")
# The demo's figure at seed 0, 1 thread (torch 2.13.0+cpu, TRL 1.16.0): 100 held-out problems, greedy.
SEED_0_ACCURACY = (0.35, 1.0)
SEED_0_TOOL_CALL_RATE = (0.35, 1.0)


def test_examples_demo_tools_yaml_is_the_demo_config_and_loads():
    assert read_yaml_file(DEMO_YAML) == TOOLS_DEMO_SETTINGS
    config = load_config(DEMO_YAML)
    assert config.options.model_id == "builtin:tiny-chat" and config.options.tools == ["grpokit.tasks.tool_task:multiply"]
    assert config.grpo_config.max_tool_calling_iterations == 1 and config.grpo_config.seed == 0


def metrics_lines(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]


@pytest.mark.slow
def test_short_tools_demo_writes_tool_metrics_curves_and_conversations(tmp_path):
    out = tmp_path / "demo"
    result = run_tools_demo(out, overrides=["max_steps=3"], options=SHORT)
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["steps"] == 3 and summary["task"] == "tools" and summary["threads"] == 1
    assert [row[0] for row in summary["accuracy_curve"]] == [0, 2, 3]
    assert summary["tool_call_rate_after"] == summary["accuracy_curve"][-1][2] == result.summary.tool_call_rate_after
    assert 0 < summary["train_cpu_seconds"] and 0 < summary["train_seconds"]

    metrics = metrics_lines(out)
    training = [line for line in metrics if "reward" in line]
    assert [line["step"] for line in training] == [1, 2, 3]
    assert all("tools/calls_per_completion" in line for line in training), "every step logs its tool calls"
    assert not any("tools/call_frequency" in line for line in metrics), "TRL's names are replaced, not doubled"
    assert [line["step"] for line in metrics if "heldout_tool_call_rate" in line] == [0, 2, 3]
    assert any(line.get("tools/calls_per_completion", 0) > 0 for line in training), "the model calls its tool"

    completions = [json.loads(line) for line in (out / "completions.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(completions) == 3 * 2 and all(isinstance(c["messages"], list) for c in completions)
    assert {c["answer"] for c in completions} == {p.answer for p in tool_task.heldout_problems(2)}
    html = (out / "report.html").read_text(encoding="utf-8")
    assert '<div class="conversation">' in html and "held-out tool-call rate before training" in html
    assert "completion (step 0)" in html and "completion (step 3)" in html


@pytest.mark.slow
def test_the_same_seed_gives_the_same_tools_demo(tmp_path):
    short = ToolsDemoOptions(heldout_size=8, eval_every=2, train_problems=32, sample_completions=1)
    first = run_tools_demo(tmp_path / "a", overrides=["max_steps=4"], options=short)
    second = run_tools_demo(tmp_path / "b", overrides=["max_steps=4"], options=short)
    assert first.summary.accuracy_curve == second.summary.accuracy_curve
    keys = ("reward", "loss", "grad_norm", *TOOL_KEYS)
    assert [[line.get(k) for k in keys] for line in metrics_lines(tmp_path / "a")] == [
        [line.get(k) for k in keys] for line in metrics_lines(tmp_path / "b")
    ]


@pytest.fixture
def reset_global_tracking_uri():
    yield
    import mlflow

    mlflow.set_tracking_uri(None)


@pytest.mark.slow
def test_tool_metrics_reach_a_real_mlflow_server_wandb_and_tensorboard(tmp_path, reset_global_tracking_uri):
    pytest.importorskip("mlflow")
    pytest.importorskip("wandb")
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from test_tracking_mlflow import running_mlflow_server
    from test_tracking_wandb import wandb_records

    with running_mlflow_server(tmp_path / "server") as server:
        out = tmp_path / "demo"
        overrides = ["max_steps=3", f"mlflow_uri={server.url}", "mlflow_experiment_name=agents", "wandb_project=agents",
                     "wandb_mode=offline", "report_to=[wandb, tensorboard]"]  # fmt: skip
        run_tools_demo(out, overrides=overrides, options=SHORT)
        client = MlflowClient(server.url)
        [run] = client.search_runs([client.get_experiment_by_name("agents").experiment_id])
        mlflow_history = {key: sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key)) for key in TOOL_KEYS}
        assert "tools/call_frequency" not in run.data.metrics and "tools/failure_frequency" not in run.data.metrics

    training = [line for line in metrics_lines(out) if "reward" in line]
    [run_file] = (out / "wandb").glob("offline-run-*/run-*.wandb")
    wandb_history = [
        {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
        for record in wandb_records(run_file)
        if record.WhichOneof("record_type") == "history"
    ]
    tensorboard = EventAccumulator(str(out / "tensorboard"))
    tensorboard.Reload()
    for key in TOOL_KEYS:
        expected = [(line["step"], line[key]) for line in training if key in line]
        assert expected, key
        same_series(mlflow_history[key], expected)
        same_series([(row["_step"], row[key]) for row in wandb_history if key in row], expected)
        same_series([(e.step, e.value) for e in tensorboard.Scalars(f"train/{key}")], expected)  # float32 there


def same_series(found: list[tuple[int, float]], expected: list[tuple[int, float]]) -> None:
    assert [step for step, _ in found] == [step for step, _ in expected]
    assert [value for _, value in found] == pytest.approx([value for _, value in expected], rel=1e-6)


def test_cli_demo_rejects_an_unknown_task():
    result = subprocess.run(
        [sys.executable, "-m", "grpokit", "demo", "--task", "chess"], capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 2 and "chess" in result.stderr and "addition" in result.stderr and "tools" in result.stderr


@pytest.mark.slow
def test_the_tools_demo_reproduces_its_figure_at_seed_0(tmp_path):
    out = tmp_path / "demo-tools"
    result = subprocess.run(
        [sys.executable, "-m", "grpokit", "demo", "--task", "tools", "--output-dir", str(out)],
        capture_output=True, text=True, timeout=1800, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert (summary["accuracy_before"], summary["accuracy_after"]) == SEED_0_ACCURACY, summary
    assert (summary["tool_call_rate_before"], summary["tool_call_rate_after"]) == SEED_0_TOOL_CALL_RATE, summary
    assert summary["accuracy_gain"] >= 0.25 and summary["steps"] == TOOLS_DEMO_SETTINGS["max_steps"]
    assert "held-out accuracy" in result.stdout and "tool-call rate" in result.stdout
