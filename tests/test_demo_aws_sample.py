"""`grpokit demo --task aws-sample`: the converted AWS sample config, its data layout, and (slow) that it learns."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from grpokit.commands import demo_aws_sample
from grpokit.commands.demo_aws_sample import AwsDemoOptions, run_aws_sample_demo
from grpokit.commands.demo_aws_sample_config import (
    DEMO_DROPPED,
    DEMO_OVERRIDES,
    SAMPLE_ARGS,
    converted_sample_config,
    demo_config_yaml,
    demo_settings,
)
from grpokit.config import load_config, read_yaml_file
from grpokit.tasks import format_task

REPO = Path(__file__).resolve().parents[1]
SAMPLE_DIR = REPO / "examples" / "aws_sample"
SHORT = AwsDemoOptions(heldout_size=4, samples=2, max_new_tokens=16, train_problems=32, sample_completions=2)
# The figures `grpokit demo --task aws-sample` gives at seed 0 with one thread (README): 64 held-out prompts, greedy.
SEED0_FIGURES = {
    "format_before": 0.0,
    "format_after": 0.969,
    "rouge_l_precision_before": 0.160,
    "rouge_l_precision_after": 0.354,
}
ONE_PROMPT = 1 / 64  # a held-out figure moves by this when one of the 64 greedy answers changes


def test_the_demo_converts_the_samples_own_args_yaml():
    assert read_yaml_file(SAMPLE_DIR / "args.yaml") == SAMPLE_ARGS


def test_examples_demo_yaml_is_the_demo_config_and_loads():
    text = (SAMPLE_DIR / "demo.yaml").read_text(encoding="utf-8")
    assert text == demo_config_yaml(), (
        "regenerate: python -c 'from grpokit.commands.demo_aws_sample_config import demo_config_yaml as d; "
        "print(d(), end=\"\")' > examples/aws_sample/demo.yaml"
    )
    config = load_config(SAMPLE_DIR / "demo.yaml", cuda_available=False)
    options, grpo = config.options, config.grpo_config
    assert options.model_id == "builtin:tiny-chat" and options.load_in_4bit and options.use_lora
    assert grpo.loss_type == "bnpo", "trl_defaults 0.17.0: TRL 0.17.0's loss, not today's dapo"
    assert [spec.name for spec in config.reward_specs] == ["rouge_l", "length", "format"]


def test_every_converted_key_is_kept_or_overridden_with_a_reason():
    converted, settings = converted_sample_config(), demo_settings()
    placed = {"output_dir", "train_dataset_path", "test_dataset_path"}
    for key, value in converted.items():
        if key in DEMO_DROPPED or key in placed:
            assert key not in settings or key in placed
        elif key in DEMO_OVERRIDES:
            assert settings.get(key) == DEMO_OVERRIDES[key][0]
        else:
            assert settings[key] == value, f"{key} must stay as converted, or be a documented override"
    for key in ("trl_defaults", "load_in_4bit", "lora_r", "lora_alpha", "lora_dropout", "lora_target_modules", "rewards"):
        assert key not in DEMO_OVERRIDES and settings[key] == converted[key]
    assert all(why for _, why in DEMO_OVERRIDES.values()) and all(DEMO_DROPPED.values())


def test_the_demo_writes_the_samples_dataset_json_layout_without_heldout_questions(tmp_path):
    demo_aws_sample.write_demo_data(tmp_path, SHORT, seed=0)
    train = [json.loads(line) for line in (tmp_path / "data/train/dataset.json").read_text().splitlines()]
    test = [json.loads(line) for line in (tmp_path / "data/test/dataset.json").read_text().splitlines()]
    assert len(train) == SHORT.train_problems and len(test) == SHORT.heldout_size
    assert set(train[0]) == {"question", "prompt", "answer"}
    assert train[0]["prompt"][0] == {"role": "system", "content": format_task.SYSTEM_PROMPT}
    assert not {row["question"] for row in train} & {row["question"] for row in test}


@pytest.mark.slow
def test_a_short_demo_writes_summary_report_and_heldout_completions(tmp_path):
    out = tmp_path / "demo"
    result = run_aws_sample_demo(  # --config: the example file, its data paths placed in `out`
        out, config_path=SAMPLE_DIR / "demo.yaml", overrides=["max_steps=2", "per_device_train_batch_size=16"], options=SHORT
    )
    saved = read_yaml_file(out / "grpokit_config.yaml")
    assert (saved["output_dir"], saved["train_dataset_path"]) == (str(out), f"{out}/data/train/")
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["steps"] == 2 and summary["train_cpu_seconds"] > 0 and summary["torch_threads"] == 1
    assert summary["format_after"] == result.summary.format_after
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics if "heldout_format" in m] == [0, 2]
    completions = [json.loads(line) for line in (out / "completions.jsonl").read_text().splitlines()]
    assert [c["step"] for c in completions] == [0, 0, 2, 2]
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "held-out format reward before training (greedy)" in html and "completion (step 2)" in html
    assert "<code>builtin:tiny-chat</code>" in html
    assert (out / "config.json").is_file(), "merge_weights: the sample's merged model"


@pytest.mark.slow
def test_cli_demo_task_aws_sample_prints_the_summary_table(tmp_path):
    out = tmp_path / "cli-demo"
    result = subprocess.run(
        [sys.executable, "-m", "grpokit", "demo", "--task", "aws-sample", "--output-dir", str(out),
         "--set", "max_steps=1", "--set", "per_device_train_batch_size=8"],
        check=False, capture_output=True, text=True, timeout=900, env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "format reward" in result.stdout and "ROUGE-L precision" in result.stdout and "report.html" in result.stdout


@pytest.mark.slow
def test_the_default_demo_at_seed_0_raises_format_and_rouge_l_precision(tmp_path):
    summary = run_aws_sample_demo(tmp_path / "demo").summary
    for key, expected in SEED0_FIGURES.items():
        assert getattr(summary, key) == pytest.approx(expected, abs=ONE_PROMPT), (key, summary)
    assert summary.format_after - summary.format_before >= 0.25, summary
    assert summary.rouge_l_precision_after - summary.rouge_l_precision_before >= 0.1, summary
    assert summary.steps == DEMO_OVERRIDES["max_steps"][0]
