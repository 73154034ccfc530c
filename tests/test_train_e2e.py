"""End to end: train the built-in tiny model a few steps and check what a user gets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from grpokit.config import load_config
from grpokit.errors import RunError
from grpokit.model.builtin import resolve_model_path
from grpokit.outputs.files import CONFIG_FILE, RUN_INFO_FILE, TRL_DIFFERENCES_FILE
from grpokit.trainer import train


def run(config: dict, *overrides: str):
    return train(load_config(data=config, overrides=list(overrides)))


def metric_lines(output_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (output_dir / "metrics.jsonl").read_text().splitlines()]


def base_weights() -> dict[str, torch.Tensor]:
    return load_file(str(Path(resolve_model_path("builtin:tiny")) / "model.safetensors"))


@pytest.mark.slow
def test_lora_adapter_run_writes_loadable_adapter_and_metrics(tiny_config):
    result = run(tiny_config)
    out = Path(tiny_config["output_dir"])
    assert result.global_step == 2 and result.resumed_from is None
    for name in ("adapter_model.safetensors", "adapter_config.json", "tokenizer.json", "grpokit_config.yaml"):
        assert (out / name).is_file(), name
    assert not list(out.glob("*.bin")), "only safetensors and JSON in the output"

    from peft import AutoPeftModelForCausalLM

    model = AutoPeftModelForCausalLM.from_pretrained(str(out))
    lora_b = [p for n, p in model.named_parameters() if "lora_B" in n]
    assert lora_b and any(p.abs().sum() > 0 for p in lora_b), "LoRA B starts at zero; training must move it"

    lines = metric_lines(out)
    assert [line["step"] for line in lines] == [1, 2]
    for key in ("reward", "rewards/rouge_l/mean", "rewards/length/mean", "loss", "completions/mean_length", "step_time"):
        assert key in lines[0], key
    saved = yaml.safe_load((out / "grpokit_config.yaml").read_text())
    assert saved["model_id"] == "builtin:tiny" and saved["max_steps"] == 2

    samples = [json.loads(line) for line in (out / "sample_completions.jsonl").read_text().splitlines()]
    assert samples and {sample["step"] for sample in samples} == {1, 2}
    for sample in samples:
        assert sample["prompt"].endswith("=") and isinstance(sample["completion"], str)
        assert 0.0 <= sample["reward"] <= 2.0  # rouge_l + length, each in [0, 1]


@pytest.mark.slow
def test_step_time_is_the_wall_time_between_logged_steps_and_trls_own_figure_is_kept_apart(tiny_config):
    import time

    from transformers import TrainerCallback

    class LogClock(TrainerCallback):  # an independent clock: the wall time at each training log
        def __init__(self):
            self.begin, self.stamps = None, []

        def on_train_begin(self, args, state, control, **kwargs):
            self.begin = time.perf_counter()

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "train_runtime" not in logs:
                self.stamps.append(time.perf_counter())

    clock = LogClock()
    train(load_config(data={**tiny_config, "max_steps": 3}), extra_callbacks=[clock])
    lines = metric_lines(Path(tiny_config["output_dir"]))
    walls = [after - before for before, after in zip([clock.begin, *clock.stamps], clock.stamps)]
    assert len(lines) == len(walls) == 3
    for line, wall in zip(lines, walls):
        # TRL's `step_time` is only its training_step; each step here also saves a checkpoint (save_steps: 1)
        assert line["trl_step_time"] < line["step_time"], line
        assert abs(line["step_time"] - wall) < 0.05 * wall + 0.005, (line["step_time"], wall)


@pytest.mark.slow
def test_merged_model_is_plain_transformers_checkpoint_with_changed_weights(tiny_config):
    tiny_config["merge_weights"] = True
    tiny_config["lora_r"] = 4
    run(tiny_config)
    out = Path(tiny_config["output_dir"])
    assert (out / "model.safetensors").is_file() and not (out / "adapter_config.json").exists()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(out))
    AutoTokenizer.from_pretrained(str(out))
    merged = load_file(str(out / "model.safetensors"))
    base = base_weights()
    changed = [k for k in base if k in merged and not torch.equal(base[k], merged[k])]
    assert changed, "merging a trained adapter changes the base weights"
    assert sum(p.numel() for p in model.parameters()) > 0


@pytest.mark.slow
def test_full_fine_tuning_changes_parameters(tiny_config):
    tiny_config["use_lora"] = False
    run(tiny_config)
    trained = load_file(str(Path(tiny_config["output_dir"]) / "model.safetensors"))
    base = base_weights()
    assert any(not torch.equal(base[k], trained[k]) for k in base if k in trained)


@pytest.mark.slow
def test_rerun_resumes_from_last_complete_checkpoint(tiny_config):
    run(tiny_config)  # steps 1-2, a checkpoint every step
    out = Path(tiny_config["output_dir"])
    checkpoints = out / "checkpoints"
    assert (checkpoints / "checkpoint-2" / "grpokit_complete.json").is_file()
    # A checkpoint cut short (no marker, no state) must be skipped.
    (checkpoints / "checkpoint-3").mkdir()
    result = run(tiny_config, "max_steps=4")
    assert result.resumed_from == checkpoints / "checkpoint-2"
    assert result.global_step == 4
    assert [line["step"] for line in metric_lines(out)] == [1, 2, 3, 4]
    sample_steps = [json.loads(line)["step"] for line in (out / "sample_completions.jsonl").read_text().splitlines()]
    assert sorted(set(sample_steps)) == [1, 2, 3, 4]
    assert len({sample_steps.count(step) for step in sample_steps}) == 1, "no step recorded twice"


@pytest.mark.slow
def test_resume_never_starts_over_and_keeps_the_old_checkpoints_apart(tiny_config):
    run(tiny_config)
    checkpoints = Path(tiny_config["output_dir"]) / "checkpoints"
    result = run(tiny_config, "resume=never", "max_steps=1")
    assert result.resumed_from is None and result.global_step == 1
    superseded = list(checkpoints.glob("superseded-*"))
    assert len(superseded) == 1 and (superseded[0] / "checkpoint-2" / "grpokit_complete.json").is_file()
    # The old run's checkpoint-2 is out of the way: auto resumes this run's checkpoint-1.
    assert run(tiny_config, "max_steps=2").resumed_from == checkpoints / "checkpoint-1"


@pytest.mark.slow
def test_rerunning_a_finished_run_trains_nothing_and_keeps_its_model(tiny_config):
    run(tiny_config)
    out = Path(tiny_config["output_dir"])
    adapter_before = load_file(str(out / "adapter_model.safetensors"))
    result = run(tiny_config)
    assert result.resumed_from == out / "checkpoints" / "checkpoint-2" and result.global_step == 2
    assert [line["step"] for line in metric_lines(out)] == [1, 2]
    assert not (out / "checkpoints" / "checkpoint-3").exists()
    adapter_after = load_file(str(out / "adapter_model.safetensors"))
    assert all(torch.equal(adapter_before[k], adapter_after[k]) for k in adapter_before)


@pytest.mark.slow
def test_raising_reward_names_reward_and_row(tiny_config, tmp_path):
    rewards_file = tmp_path / "my_rewards.py"
    rewards_file.write_text(
        "def broken(prompts, completions, **kwargs):\n    raise ValueError('boom')\n", encoding="utf-8"
    )
    tiny_config["rewards"] = [{"name": f"{rewards_file}:broken"}]
    with pytest.raises(RunError) as caught:
        run(tiny_config)
    assert "broken" in caught.value.message and "row" in caught.value.message


@pytest.mark.slow
def test_merged_run_after_adapter_run_leaves_no_stale_adapter(tiny_config):
    run(tiny_config)
    out = Path(tiny_config["output_dir"])
    assert (out / "adapter_model.safetensors").is_file()
    run(tiny_config, "merge_weights=true", "resume=never")
    assert not (out / "adapter_config.json").exists() and not (out / "adapter_model.safetensors").exists()
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(out))
    assert not getattr(model, "peft_config", None), "a stale adapter would be loaded on top of the merged model"


@pytest.mark.slow
def test_merge_by_reloading_matches_merging_in_place(tiny_config):
    """The path used for 4-bit and sharded models: reload the base whole, fold the saved adapter in."""
    from peft import AutoPeftModelForCausalLM

    from grpokit.outputs.saving import _merge_by_reloading

    run(tiny_config)
    out = Path(tiny_config["output_dir"])
    options = load_config(data=tiny_config).options
    reloaded = _merge_by_reloading(out, options).state_dict()
    in_place = AutoPeftModelForCausalLM.from_pretrained(str(out)).merge_and_unload().state_dict()
    assert reloaded.keys() == in_place.keys()
    assert all(torch.allclose(reloaded[k], in_place[k]) for k in reloaded)


@pytest.mark.slow
def test_no_secret_in_any_checkpoint_file(tiny_config, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_ENV_SECRET_from_the_environment")  # restored after the test
    run({**tiny_config, "hub_token": "hf_SECRET_HUB", "token": "hf_SECRET_TOKEN"})
    files = [path for path in Path(tiny_config["output_dir"]).rglob("*") if path.is_file()]
    assert any(path.name == "training_args.bin" for path in files)
    for path in files:
        content = path.read_bytes()
        for secret in (b"hf_ENV_SECRET_from_the_environment", b"hf_SECRET_HUB", b"hf_SECRET_TOKEN"):
            assert secret not in content, (path, secret)



def test_the_trainer_gets_the_loaded_grpo_config_and_the_run_callbacks_in_their_order(tiny_config):
    from transformers import TrainerCallback
    from transformers.trainer_callback import DefaultFlowCallback

    from grpokit.model.loading import load_tokenizer
    from grpokit.pipeline import build_reward_set, load_run_data
    from grpokit.trainer.recipe import build_trainer

    config = load_config(data={**tiny_config, "report_to": "tensorboard"})
    reward_set = build_reward_set(config)
    extra = TrainerCallback()
    trainer, callbacks = build_trainer(
        config, load_run_data(config, reward_set), reward_set, load_tokenizer(config.options), extra_callbacks=[extra]
    )
    assert trainer.args is config.grpo_config, "TRL's config is built once, at load"
    assert trainer.args.reward_weights == [1.0, 1.0]
    ours = list(callbacks.in_run_order())
    assert ours[0] is callbacks.tool_metric_names, "TRL's tool metric names are made grpokit's before any other callback reads a log"
    assert ours[1] is callbacks.step_time, "the step's wall time is in the logs before any callback reads them"
    assert ours[2] is extra and ours[3] is callbacks.reward_spread and ours[-1] is callbacks.tracking
    assert ours.index(callbacks.health) < ours.index(callbacks.tensorboard) < ours.index(callbacks.metrics)
    assert ours.index(callbacks.stop) < ours.index(callbacks.watchdog)
    handler = trainer.callback_handler.callbacks
    assert handler[-len(ours) :] == ours  # after transformers' own flow control, in run order
    assert [type(callback) for callback in handler[: -len(ours)]] == [DefaultFlowCallback]  # its bar, printer, trackers replaced
    assert callbacks.tensorboard.logging_dir == str(Path(tiny_config["output_dir"]) / "tensorboard")


def test_a_run_that_fails_before_its_first_checkpoint_leaves_no_empty_checkpoints_folder(tiny_config, tmp_path):
    rewards_file = tmp_path / "my_rewards.py"
    rewards_file.write_text("def broken(prompts, completions, **kwargs):\n    raise ValueError('boom')\n", encoding="utf-8")
    out = tmp_path / "fresh" / "run"
    with pytest.raises(RunError):
        run({**tiny_config, "output_dir": str(out), "rewards": [{"name": f"{rewards_file}:broken"}]})
    assert not (out / "checkpoints").exists()  # created by the run (and by TRL's Trainer), left empty: removed
    assert sorted(path.name for path in out.iterdir()) == sorted([CONFIG_FILE, RUN_INFO_FILE, TRL_DIFFERENCES_FILE])  # what the run wrote stays
