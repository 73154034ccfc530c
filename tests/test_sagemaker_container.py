"""Inside a SageMaker container: path mapping, failure reason, and `grpokit train` in a fake /opt/ml.

The end-to-end tests build a fake `/opt/ml` tree under `tmp_path`, point the `SM_*` variables at it
(and `GRPOKIT_SM_CHECKPOINT_DIR` at its checkpoint directory), and run the entry script the launcher
ships, in a subprocess, exactly as SageMaker would run it (without torchrun).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import TINY_TRAINING
from grpokit.launch.container import (
    CHECKPOINT_ROOT_ENV,
    DEFAULT_CHECKPOINT_ROOT,
    in_sagemaker,
    sagemaker_overrides,
    sagemaker_paths,
    write_failure,
)


def fake_env(root: Path, **extra: str) -> dict[str, str]:
    """The variables SageMaker sets, for a container rooted at `root` (`root/opt/ml/...`)."""
    ml = root / "opt" / "ml"
    return {
        "TRAINING_JOB_NAME": "grpokit-test-job",
        "SM_CHANNELS": '["config", "train"]',
        "SM_CHANNEL_CONFIG": str(ml / "input" / "data" / "config"),
        "SM_CHANNEL_TRAIN": str(ml / "input" / "data" / "train"),
        "SM_MODEL_DIR": str(ml / "model"),
        "SM_OUTPUT_FAILURE": str(ml / "output" / "failure"),
        "SM_NUM_GPUS": "0",
        "SM_HOST_COUNT": "1",
        CHECKPOINT_ROOT_ENV: str(ml / "checkpoints"),
        **extra,
    }


# ----------------------------------------------------------------------------- the contract


def test_in_sagemaker_needs_a_sagemaker_variable():
    assert not in_sagemaker({})
    assert not in_sagemaker({"HOME": "/root", "SM_SOMETHING_ELSE": "x"})
    assert in_sagemaker({"SM_MODEL_DIR": "/opt/ml/model"})
    assert in_sagemaker({"TRAINING_JOB_NAME": "job"})


def test_paths_map_to_channels_model_dir_and_checkpoint_root(tmp_path):
    env = fake_env(tmp_path, SM_CHANNEL_TEST=str(tmp_path / "opt/ml/input/data/test"))
    options = {
        "train_dataset_path": "data/train.jsonl",
        "test_dataset_path": None,
        "output_dir": "outputs/run1",
    }
    assert sagemaker_paths(options, env) == {
        "train_dataset_path": env["SM_CHANNEL_TRAIN"],
        "test_dataset_path": env["SM_CHANNEL_TEST"],
        "output_dir": env["SM_MODEL_DIR"],
        "checkpoint_dir": env[CHECKPOINT_ROOT_ENV],
    }
    assert sagemaker_overrides(options, env) == [
        f"train_dataset_path={env['SM_CHANNEL_TRAIN']}",
        f"test_dataset_path={env['SM_CHANNEL_TEST']}",
        f"output_dir={env['SM_MODEL_DIR']}",
        f"checkpoint_dir={env[CHECKPOINT_ROOT_ENV]}",
    ]


def test_paths_already_in_the_container_layout_are_kept():
    env = {
        "SM_MODEL_DIR": "/opt/ml/model",
        "SM_CHANNEL_TRAIN": "/opt/ml/input/data/train",
    }
    options = {  # the AWS sample's args.yaml
        "train_dataset_path": "/opt/ml/input/data/train/",
        "test_dataset_path": "/opt/ml/input/data/test/",  # no test channel: left as written
        "output_dir": "/opt/ml/model",
        "checkpoint_dir": "/opt/ml/checkpoints",
    }
    assert sagemaker_paths(options, env) == {}
    assert (
        sagemaker_paths({**options, "train_dataset_path": "/opt/ml/input/data/train/part.jsonl"}, env) == {}
    )


def test_checkpoint_root_defaults_to_opt_ml_checkpoints():
    assert (
        sagemaker_paths({"checkpoint_dir": None}, {"SM_MODEL_DIR": "/opt/ml/model"})["checkpoint_dir"]
        == DEFAULT_CHECKPOINT_ROOT
    )


def test_works_with_grpokit_options(tmp_path, tiny_config):
    from grpokit.config import load_config

    options = load_config(data=tiny_config).options
    env = fake_env(tmp_path)
    assert sagemaker_paths(options, env)["output_dir"] == env["SM_MODEL_DIR"]
    assert sagemaker_paths(options, {}) == {} and sagemaker_overrides(options, {}) == []


def test_write_failure_first_reason_wins_and_is_cut_to_1024(tmp_path):
    env = fake_env(tmp_path)
    target = write_failure("DataError: train.jsonl has no column 'answer'\n" + "x" * 5000, env)
    assert target == Path(env["SM_OUTPUT_FAILURE"])
    text = target.read_text()
    assert text.startswith("DataError: train.jsonl has no column 'answer'")
    assert len(text.strip()) == 1024
    write_failure("a later, less useful reason", env)
    assert target.read_text() == text


def test_write_failure_does_nothing_outside_sagemaker(tmp_path):
    assert write_failure("boom", {}) is None
    assert not any(tmp_path.iterdir())


# ----------------------------------------------------------------------------- `grpokit train` in a fake container

class FakeContainer:
    """A fake /opt/ml tree holding what `grpokit launch sagemaker` would ship, and its environment."""

    def __init__(self, root: Path, training_config: dict, rows: list[dict]) -> None:
        from grpokit.launch.sagemaker import plan as plan_module
        from grpokit.launch.sagemaker import settings as settings_module
        from grpokit.launch.sagemaker import staging as staging_module

        self.root = root
        self.env = fake_env(root)
        laptop = root / "laptop"
        laptop.mkdir(parents=True)
        (laptop / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        config = {**training_config, "train_dataset_path": str(laptop / "train.jsonl")}
        plan = plan_module.plan_job(
            config, settings_module.SageMakerSettings(region="us-east-1"), config_dir=laptop, cwd=laptop
        )
        staged = staging_module.stage_job_files(plan, root / "staging")
        # What SageMaker does with the channels: copy each one under /opt/ml/input/data/<name>.
        data = root / "opt" / "ml" / "input" / "data"
        for name, source in {"config": staged.config_dir, "code": staged.code_dir}.items():
            shutil.copytree(source, data / name)
        (data / "train").mkdir()
        (data / "train" / "train.jsonl").write_bytes((laptop / "train.jsonl").read_bytes())
        self.config_path = data / "config" / "grpokit.yaml"
        self.entry_script = data / "code" / "grpokit_entry.py"
        self.model_dir = Path(self.env["SM_MODEL_DIR"])
        self.checkpoint_dir = Path(self.env[CHECKPOINT_ROOT_ENV])
        self.failure_file = Path(self.env["SM_OUTPUT_FAILURE"])

    def command(self, *overrides: str) -> list[str]:
        if overrides:  # the shipped config is the job's input; a later "job" gets an edited copy
            config = yaml.safe_load(self.config_path.read_text())
            for override in overrides:
                key, _, value = override.partition("=")
                config[key] = yaml.safe_load(value)
            self.config_path.write_text(yaml.safe_dump(config))
        return [sys.executable, str(self.entry_script), "--config", str(self.config_path)]

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        return {**env, **self.env}

    def run(self, *overrides: str, timeout: int = 600) -> subprocess.CompletedProcess:
        return subprocess.run(
            self.command(*overrides),
            check=False,
            capture_output=True,
            text=True,
            cwd=self.root,
            env=self.environment(),
            timeout=timeout,
        )


def container_config(**extra) -> dict:
    return {**TINY_TRAINING, "output_dir": "outputs/on-my-laptop", "max_steps": 3, **extra}


ROWS = [{"prompt": f"{a}+{b}=", "answer": str(a + b)} for a, b in zip(range(10, 42), range(50, 82))]


def checkpoint_steps(directory: Path) -> list[int]:
    return sorted(int(p.name.split("-")[1]) for p in directory.glob("checkpoint-*"))


def metric_steps(model_dir: Path) -> list[int]:
    lines = (model_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["step"] for line in lines if line.strip()]


@pytest.mark.slow
def test_job_saves_model_and_checkpoints_in_the_container_layout_and_resumes(tmp_path):
    from grpokit.outputs.checkpoints import is_complete_checkpoint

    container = FakeContainer(tmp_path, container_config(), ROWS)
    first = container.run()
    assert first.returncode == 0, first.stderr[-3000:]
    assert (container.model_dir / "adapter_model.safetensors").is_file()  # LoRA adapter, in SM_MODEL_DIR
    assert (container.model_dir / "grpokit_config.yaml").is_file()
    assert not (tmp_path / "outputs").exists()  # the laptop output_dir was mapped away
    assert checkpoint_steps(container.checkpoint_dir)[-1] == 3
    assert is_complete_checkpoint(container.checkpoint_dir / "checkpoint-3")

    second = container.run("max_steps=5")  # a spot restart / a new job with the same checkpoint S3 URI
    assert second.returncode == 0, second.stderr[-3000:]
    assert "checkpoint-3" in second.stderr  # "resuming from .../checkpoint-3"
    assert checkpoint_steps(container.checkpoint_dir)[-1] == 5
    state = json.loads((container.checkpoint_dir / "checkpoint-5" / "trainer_state.json").read_text())
    assert state["global_step"] == 5
    assert metric_steps(container.model_dir) == [1, 2, 3, 4, 5]  # continued at step 4, no step twice


@pytest.mark.slow
def test_sigterm_mid_run_leaves_a_loadable_checkpoint(tmp_path):
    from safetensors.torch import load_file

    from grpokit.outputs.checkpoints import last_complete_checkpoint

    container = FakeContainer(tmp_path, container_config(max_steps=500, save_steps=10_000), ROWS)
    process = subprocess.Popen(
        container.command(),
        cwd=tmp_path,
        env=container.environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 300
        while not (
            (container.model_dir / "metrics.jsonl").exists() and len(metric_steps(container.model_dir)) >= 2
        ):
            assert process.poll() is None, process.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "training did not reach step 2"
            time.sleep(0.5)
        process.send_signal(signal.SIGTERM)  # what SageMaker sends on stop, max runtime or spot interruption
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 143, stderr[-3000:]  # 128 + SIGTERM: stopped, not failed
    assert "run the same command again to resume" in stderr
    checkpoint = last_complete_checkpoint(container.checkpoint_dir)
    assert checkpoint is not None, stderr[-3000:]
    step = json.loads((checkpoint / "trainer_state.json").read_text())["global_step"]
    assert 2 <= step < 500
    weights = load_file(str(checkpoint / "adapter_model.safetensors"))
    assert weights and all(tensor.isfinite().all() for tensor in weights.values())


@pytest.mark.slow
def test_failure_reason_goes_to_sm_output_failure(tmp_path):
    container = FakeContainer(tmp_path, container_config(), [{"prompt": "1+1=", "wrong_column": "2"}] * 8)
    result = container.run()
    # Bad input: grpokit's own one-line error and exit 2, not a crash (1) with a traceback.
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stdout + result.stderr, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr[-3000:]
    reason = container.failure_file.read_text()
    what = reason.splitlines()[0]
    assert "'answer'" in what  # rouge_l reads the column `answer`, which the data lacks
    assert " ".join(what.split()) in " ".join(result.stderr.split()), "SageMaker shows the message the log shows"
    assert "Traceback" not in reason and len(reason) <= 1025
