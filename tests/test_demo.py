"""`grpokit demo`: the shipped config, a shortened demo's outputs, and (slow) that accuracy rises."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from grpokit.commands.demo import DEMO_SETTINGS, DemoOptions, run_demo
from grpokit.config import load_config, read_yaml_file
from grpokit.tasks import addition

REPO = Path(__file__).resolve().parents[1]
DEMO_YAML = REPO / "examples" / "demo.yaml"
SUMMARY_KEYS = {"accuracy_before", "accuracy_after", "train_seconds", "steps", "reward_first", "reward_last"}
SHORT = DemoOptions(heldout_size=16, eval_every=2, train_problems=64, sample_completions=4)


def test_examples_demo_yaml_is_the_demo_config_and_loads():
    assert read_yaml_file(DEMO_YAML) == DEMO_SETTINGS
    config = load_config(DEMO_YAML)
    assert config.options.model_id == "builtin:tiny" and not config.options.use_lora
    assert config.grpo_config.learning_rate == 1e-4


@pytest.mark.slow
def test_short_demo_writes_summary_report_plot_and_accuracy_curve(tmp_path):
    result = run_demo(tmp_path / "demo", overrides=["max_steps=3"], options=SHORT)
    out = tmp_path / "demo"

    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert SUMMARY_KEYS <= set(summary)
    assert summary["steps"] == 3 and 0.0 <= summary["accuracy_before"] <= 1.0 and summary["train_seconds"] > 0
    assert [step for step, _ in summary["accuracy_curve"]] == [0, 2, 3]
    assert summary["accuracy_after"] == summary["accuracy_curve"][-1][1] == result.summary.accuracy_after

    # Held-out accuracy lands in metrics.jsonl: step 0 before training, then every 2 steps and the last.
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics if "heldout_accuracy" in m] == [0, 2, 3]
    assert [m["step"] for m in metrics if "reward" in m] == [1, 2, 3]

    # Completions are recorded for the first 4 held-out problems at each evaluation.
    completions = [json.loads(line) for line in (out / "completions.jsonl").read_text().splitlines()]
    assert len(completions) == 3 * 4
    assert {c["prompt"] for c in completions} == {p.prompt for p in addition.heldout_problems(4)}

    html = (out / "report.html").read_text(encoding="utf-8")
    assert '<pre id="config">' in html and "<code>model_id</code></td><td><code>builtin:tiny</code>" in html and "exact_match" in html
    assert '<table id="completions">' in html and "completion (step 3)" in html
    assert '<table id="summary">' in html and "<th>held-out accuracy before training</th>" in html
    with Image.open(out / "curves.png") as image:
        image.verify()
        assert image.format == "PNG"


@pytest.mark.slow
def test_demo_training_data_never_holds_a_heldout_pair(tmp_path):
    run_demo(tmp_path / "demo", overrides=["max_steps=1"], options=SHORT)
    rows = [json.loads(line) for line in (tmp_path / "demo/data/train.jsonl").read_text().splitlines()]
    assert len(rows) == SHORT.train_problems
    heldout = {p.prompt for p in addition.heldout_problems(len(addition.split_pairs().heldout))}
    assert not heldout & {row["prompt"] for row in rows}


@pytest.mark.slow
def test_same_seed_gives_the_same_demo(tmp_path):
    first = run_demo(tmp_path / "a", overrides=["max_steps=2"], options=SHORT).summary
    second = run_demo(tmp_path / "b", overrides=["max_steps=2"], options=SHORT).summary
    assert first.accuracy_curve == second.accuracy_curve
    assert (first.reward_first, first.reward_last) == (second.reward_first, second.reward_last)


@pytest.mark.slow
def test_cli_demo_prints_the_summary_table(tmp_path):
    out = tmp_path / "cli-demo"
    result = subprocess.run(
        [sys.executable, "-m", "grpokit", "demo", "--output-dir", str(out), "--set", "max_steps=2"],
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "COLUMNS": "200"},  # rich wraps long paths at 80 columns otherwise
    )
    assert result.returncode == 0, result.stderr
    assert "held-out accuracy" in result.stdout and "report.html" in result.stdout
    assert (out / "summary.json").is_file() and (out / "report.html").is_file()


@pytest.mark.slow
def test_cli_demo_with_a_bad_override_exits_2(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "grpokit", "demo", "--output-dir", str(tmp_path), "--set", "learnin_rate=1"],
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 2 and "learning_rate" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_default_demo_raises_heldout_accuracy_by_25_points(tmp_path):
    summary = run_demo(tmp_path / "demo").summary
    assert summary.accuracy_after - summary.accuracy_before >= 0.25, summary
    assert summary.steps == DEMO_SETTINGS["max_steps"]
