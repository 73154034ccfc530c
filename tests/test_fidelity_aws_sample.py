"""The AWS sample's args.yaml under grpokit: `grpokit convert aws-sample`, its TRL 0.17.0 values, and training it."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from typer.testing import CliRunner

from grpokit.cli import app
from grpokit.commands.convert import convert, run_convert
from grpokit.config import load_config
from grpokit.model.builtin import resolve_model_path
from grpokit.pipeline import build_reward_set
from grpokit.trainer import train

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_ARGS = ROOT / "examples" / "aws_sample" / "args.yaml"
TRACKING_KEYS = ("mlflow_uri", "mlflow_experiment_name", "wandb_project")  # the sample's servers; none here


def sample_layout_data(directory: Path) -> tuple[Path, Path]:
    """train/ and test/ channel directories holding `dataset.json` (JSON Lines), as the sample reads them."""
    rows = [{"prompt": f"{a}+{b}=", "answer": str(a + b)} for a, b in zip(range(10, 42), range(50, 82))]
    for split, part in (("train", rows), ("test", rows[:8])):
        (directory / split).mkdir(parents=True, exist_ok=True)
        (directory / split / "dataset.json").write_text("".join(json.dumps(row) + "\n" for row in part))
    return directory / "train", directory / "test"


def sample_args_for_here(tmp_path: Path) -> dict:
    """The sample's args.yaml with the model and paths changed: builtin:tiny, local data, local outputs.

    Plus 2 steps, each logged (the sample logs every 10th), so metrics.jsonl shows what each step trained.
    """
    args = yaml.safe_load(SAMPLE_ARGS.read_text())
    train_dir, test_dir = sample_layout_data(tmp_path / "data")
    for key in TRACKING_KEYS:
        args.pop(key)
    args.update(
        model_id="builtin:tiny",
        train_dataset_path=str(train_dir),
        test_dataset_path=str(test_dir),
        checkpoint_dir=str(tmp_path / "checkpoints"),
        output_dir=str(tmp_path / "model"),
        max_steps=2,
        logging_steps=1,
    )
    return args


def metric_lines(output_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (output_dir / "metrics.jsonl").read_text().splitlines()]


def changed_weights(model_dir: Path) -> list[str]:
    merged = load_file(str(model_dir / "model.safetensors"))
    base = load_file(str(Path(resolve_model_path("builtin:tiny")) / "model.safetensors"))
    return [key for key in base if key in merged and not torch.equal(base[key], merged[key])]


# ----------------------------------------------------------------------------- convert


def test_the_converted_sample_resolves_to_trl_0_17_0_values_and_the_samples_model_setup(tmp_path, monkeypatch):
    monkeypatch.setattr("grpokit.config.packages._installed", lambda module: True)  # the sample's GPU image has flash-attn
    written = run_convert("aws-sample", SAMPLE_ARGS, tmp_path / "grpokit.yaml").path
    config = load_config(written, cuda_available=True, world_size=1)  # as on the sample's GPU instance
    options, trl = config.options, config.trl_args
    assert options.trl_defaults == "0.17.0"
    assert (trl["beta"], trl["loss_type"], trl["max_completion_length"], trl["top_k"]) == (0.04, "bnpo", 256, 50)
    assert options.max_prompt_length == 512 and options.truncate_prompts is True
    assert trl["temperature"] == 0.2  # the sample passed its own temperature on
    assert "top_p" not in trl  # read by the sample, never passed to GRPOConfig: TRL 0.17.0's 1.0
    assert (trl["logging_steps"], trl["save_total_limit"], trl["ignore_data_skip"]) == (10, 1, True)  # hard-coded
    assert (trl["per_device_train_batch_size"], trl["gradient_accumulation_steps"], trl["learning_rate"]) == (4, 2, 2e-4)
    assert options.load_in_4bit and options.dtype == "bfloat16" and options.attn_implementation == "flash_attention_2"
    assert options.lora_target_modules == "all-linear" and (options.lora_r, options.lora_alpha, options.lora_dropout) == (8, 16, 0.1)
    assert options.merge_weights and options.trust_remote_code is False
    assert options.wandb_project is None  # the sample's W&B was off: its wandb_token is empty
    assert [spec.name for spec in options.rewards] == ["rouge_l", "length", "format"]
    on_cpu = load_config(written, cuda_available=False).grpo_config
    assert (on_cpu.beta, on_cpu.loss_type, on_cpu.temperature, on_cpu.top_p) == (0.04, "bnpo", 0.2, 1.0)


def test_the_samples_rewards_score_as_the_sample_computed_them():
    conversion = convert("aws-sample", SAMPLE_ARGS)
    config = load_config(data={**conversion.config, "model_id": "builtin:tiny", "train_dataset_path": "x"}, cuda_available=False)
    rouge_l, length, tag_format = (func.reward for func in build_reward_set(config).funcs)
    completions = ["", "a", "x" * 255, "x" * 511, "x" * 512, "x" * 900, "héllo 猫", [{"role": "assistant", "content": "abc"}]]
    texts = [c if isinstance(c, str) else c[0]["content"] for c in completions]
    sample_reward_len = [min(len(text) + 1, 512) / 512 for text in texts]  # the sample's reward_len
    assert length(prompts=["Q"] * len(completions), completions=completions) == pytest.approx(sample_reward_len)
    precision = rouge_l(prompts=["Q"] * 3, completions=["the cat sat", "cat", "dog"], answer=["the cat sat down"] * 3)
    assert precision == [1.0, 1.0, 0.0]  # ROUGE-L precision: the completion's words found in the answer, in order
    both = "<think>4 is 2+2</think>\n<answer>4</answer>"
    assert tag_format(prompts=["Q"] * 2, completions=[both, "4"]) == [1.0, 0.0]  # grpokit's, done right


def test_convert_prints_what_it_set_and_why_and_never_overwrites(tmp_path):
    output = tmp_path / "grpokit.yaml"
    result = CliRunner().invoke(app, ["convert", "aws-sample", str(SAMPLE_ARGS), "-o", str(output)])
    assert result.exit_code == 0, result.output
    assert "trl_defaults: 0.17.0  (the sample pinned trl==0.17.0" in result.output
    assert "load_in_4bit: true  (train.py always loads the base model in 4-bit NF4" in result.output
    assert "top_p: 0.9 left out: train.py never passed it to GRPOConfig" in result.output
    assert f"checked: {output} loads as a grpokit config" in result.output
    text = output.read_text()
    assert text.startswith("# Converted by `grpokit convert aws-sample") and yaml.safe_load(text)["trl_defaults"] == "0.17.0"
    again = CliRunner().invoke(app, ["convert", "aws-sample", str(SAMPLE_ARGS), "-o", str(output)])
    assert again.exit_code == 2 and "already exists" in again.output
    assert output.read_text() == text
    assert CliRunner().invoke(app, ["convert", "aws-sample", str(SAMPLE_ARGS), "-o", str(output), "--force"]).exit_code == 0


def test_a_config_with_only_the_samples_flat_keys_gets_one_warning_pointing_to_convert(tmp_path, tiny_config, caplog):
    caplog.set_level(logging.WARNING, logger="grpokit.config")
    load_config(SAMPLE_ARGS, cuda_available=False)
    pointers = [r.getMessage() for r in caplog.records if "grpokit convert aws-sample" in r.getMessage()]
    assert len(pointers) == 1
    assert f"`grpokit convert aws-sample {SAMPLE_ARGS} -o grpokit.yaml`" in pointers[0] and "TRL 0.17.0" in pointers[0]
    caplog.clear()
    load_config(run_convert("aws-sample", SAMPLE_ARGS, tmp_path / "c.yaml").path, cuda_available=False)
    load_config(data=tiny_config)
    assert not [r for r in caplog.records if "grpokit convert" in r.getMessage()]


def test_convert_refuses_keys_the_sample_never_read(tmp_path):
    path = tmp_path / "args.yaml"
    path.write_text(yaml.safe_dump({**yaml.safe_load(SAMPLE_ARGS.read_text()), "rewards": ["format"]}))
    result = CliRunner().invoke(app, ["convert", "aws-sample", str(path), "-o", str(tmp_path / "out.yaml")])
    assert result.exit_code == 2 and "keys the AWS sample does not read: rewards" in result.output
    assert not (tmp_path / "out.yaml").exists()


# ----------------------------------------------------------------------------- training


@pytest.mark.slow
def test_the_samples_args_yaml_trains_2_steps_on_the_builtin_model(tmp_path):
    config_path = tmp_path / "args.yaml"
    config_path.write_text(yaml.safe_dump(sample_args_for_here(tmp_path)))
    result = train(load_config(config_path))
    model_dir = tmp_path / "model"
    assert result.global_step == 2
    lines = metric_lines(model_dir)
    assert [line["step"] for line in lines] == [1, 2]
    for key in ("rewards/rouge_l/mean", "rewards/length/mean", "rewards/format/mean"):
        assert key in lines[0], key
    assert (model_dir / "model.safetensors").is_file() and not (model_dir / "adapter_config.json").exists()
    assert changed_weights(model_dir), "merge_weights: true saves the trained adapter merged into the base"


@pytest.mark.slow
def test_the_converted_sample_trains_2_steps_with_its_kl_term_and_rewards(tmp_path):
    source = tmp_path / "args.yaml"
    source.write_text(yaml.safe_dump(sample_args_for_here(tmp_path)))
    written = run_convert("aws-sample", source, tmp_path / "grpokit.yaml").path
    converted = yaml.safe_load(written.read_text())
    assert converted["train_dataset_path"] == f"{(tmp_path / 'data' / 'train').as_posix()}/", "the data beside args.yaml"
    # train.py ignored max_steps and hard-coded logging_steps 10; the model goes to this test's folder
    converted.update(max_steps=2, logging_steps=1, output_dir=str(tmp_path / "model"))
    written.write_text(yaml.safe_dump(converted))
    result = train(load_config(written))
    lines = metric_lines(tmp_path / "model")
    assert result.global_step == 2 and [line["step"] for line in lines] == [1, 2]
    assert "kl" in lines[0], "beta 0.04 (TRL 0.17.0) trains with a KL term to the reference model"
    assert 0.0 < lines[0]["rewards/length/mean"] <= 1.0
    saved = yaml.safe_load((tmp_path / "model" / "grpokit_config.yaml").read_text())
    assert saved["beta"] == 0.04 and saved["loss_type"] == "bnpo" and saved["max_prompt_length"] == 512


def test_the_shipped_converted_example_is_what_convert_writes_today(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # the example was written from the repository root
    fresh = run_convert("aws-sample", "examples/aws_sample/args.yaml", tmp_path / "grpokit.yaml").path
    assert fresh.read_text() == (ROOT / "examples" / "aws_sample" / "grpokit.yaml").read_text(), (
        "regenerate: grpokit convert aws-sample examples/aws_sample/args.yaml -o examples/aws_sample/grpokit.yaml --force"
    )
