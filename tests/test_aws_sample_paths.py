"""`grpokit convert aws-sample` writes a config that runs where it is taken, with no hand edits.

The sample's `args.yaml` names container paths (`/opt/ml/input/data/train/`, `/opt/ml/model`,
`/opt/ml/checkpoints`). The converted config names the data itself (the notebook's `data/train/`
beside `args.yaml`, or what `--train-data` gives: a local folder or an `s3://` URI) and local
outputs, so the same file trains on this machine and plans a SageMaker job with the data as its
channels and the container's paths inside the job.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from grpokit.cli import app
from grpokit.commands.convert import run_convert
from grpokit.config import load_config
from grpokit.launch.sagemaker import plan as plan_module
from grpokit.launch.sagemaker import settings as settings_module

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "examples" / "aws_sample"


def sample_project(directory: Path) -> Path:
    """The sample's notebook folder: args.yaml with data/train/ and data/test/ (dataset.json) beside it."""
    shutil.copy(SAMPLE / "args.yaml", directory / "args.yaml")
    shutil.copytree(SAMPLE / "data", directory / "data")
    return directory / "args.yaml"


def plan(config_path: Path, cwd: Path) -> plan_module.JobPlan:
    launch_config = plan_module.read_launch_config(config_path)
    plan_module.validate_training_config(launch_config)
    settings = settings_module.resolve_settings({}, {"region": "us-east-1"}, source=str(config_path), env={})
    return plan_module.plan_job(launch_config.training_config, settings, config_dir=config_path.parent, cwd=cwd)


def test_no_container_path_is_left_in_the_converted_config_and_each_says_why(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    report = run_convert("aws-sample", sample_project(tmp_path).name, "grpokit.yaml")
    config = yaml.safe_load(report.path.read_text())
    assert not [key for key, value in config.items() if isinstance(value, str) and value.startswith("/opt/ml")]
    assert (config["train_dataset_path"], config["test_dataset_path"]) == ("data/train/", "data/test/")
    assert config["output_dir"] == "outputs/qwen2-5-0-5b-instruct-grpo" and "checkpoint_dir" not in config
    notes = "\n".join(report.notes)
    assert "the sample's /opt/ml/input/data/train/ is the job's mount of the `train` channel, not an input" in notes
    assert "the sample's /opt/ml/model is the job's model folder" in notes
    assert "checkpoint_dir: /opt/ml/checkpoints left out: the job's checkpoint folder" in notes
    assert report.check_error is None


def test_the_converted_config_plans_a_job_with_local_data_as_channels_and_container_paths_inside(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    converted = run_convert("aws-sample", sample_project(tmp_path).name, "grpokit.yaml").path
    job = plan(converted, tmp_path)
    assert job.channels == {"train": str(tmp_path / "data" / "train"), "test": str(tmp_path / "data" / "test")}
    inside = job.container_config
    assert (inside["train_dataset_path"], inside["test_dataset_path"]) == ("/opt/ml/input/data/train", "/opt/ml/input/data/test")
    assert (inside["output_dir"], inside["checkpoint_dir"]) == ("/opt/ml/model", "/opt/ml/checkpoints")


def test_s3_data_given_when_converting_passes_through_as_the_channels(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = sample_project(tmp_path)
    result = CliRunner().invoke(app, [
        "convert", "aws-sample", args.name, "-o", "grpokit.yaml",
        "--train-data", "s3://my-bucket/grpo/train/", "--test-data", "s3://my-bucket/grpo/test/",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    config = yaml.safe_load((tmp_path / "grpokit.yaml").read_text())
    assert config["train_dataset_path"] == "s3://my-bucket/grpo/train/"
    job = plan(tmp_path / "grpokit.yaml", tmp_path)
    assert job.channels == {"train": "s3://my-bucket/grpo/train/", "test": "s3://my-bucket/grpo/test/"}


def test_the_shipped_converted_example_names_the_shipped_sample_data():
    config = load_config(SAMPLE / "grpokit.yaml", cuda_available=False)
    for key in ("train_dataset_path", "test_dataset_path"):
        folder = ROOT / getattr(config.options, key)  # relative to the repository root, where it was converted
        rows = [json.loads(line) for line in (folder / "dataset.json").read_text().splitlines()]
        assert rows and all(row["prompt"][0]["role"] == "system" and row["answer"] for row in rows)


@pytest.mark.slow
def test_the_converted_config_trains_here_as_written(tmp_path):
    """Only what this machine lacks is overridden: the Hub model (none is downloaded here) and the length of the run."""
    args = sample_project(tmp_path)
    subprocess.run(
        [sys.executable, "-m", "grpokit", "convert", "aws-sample", args.name, "-o", "grpokit.yaml"],
        cwd=tmp_path, check=True, capture_output=True,
    )  # fmt: skip
    overrides = ["model_id=builtin:tiny", "max_steps=1", "logging_steps=1", "max_completion_length=8", "mlflow_uri="]
    result = subprocess.run(
        [sys.executable, "-m", "grpokit", "train", "grpokit.yaml", *[part for o in overrides for part in ("--set", o)]],
        cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    out = tmp_path / "outputs" / "qwen2-5-0-5b-instruct-grpo"
    assert (out / "model.safetensors").is_file() and (out / "checkpoints").is_dir()
    assert yaml.safe_load((out / "grpokit_config.yaml").read_text())["load_in_4bit"] is True


def test_the_samples_own_container_paths_are_named_as_such_here_and_at_launch(tmp_path):
    from grpokit.errors import DataError
    from grpokit.pipeline import build_reward_set, load_run_data

    config = load_config(SAMPLE / "args.yaml", ["model_id=builtin:tiny"], cuda_available=False)
    with pytest.raises(DataError) as caught:
        load_run_data(config, build_reward_set(config))
    assert "a path inside a SageMaker training job" in caught.value.fix and "grpokit convert aws-sample" in caught.value.fix
    with pytest.raises(DataError, match="a path inside the job: where SageMaker mounts a channel, not an input"):
        plan(SAMPLE / "args.yaml", tmp_path)
