"""An accelerate config file under `distributed:`: its mixed precision and process count reach the run, or it is refused."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from grpokit.cli.migration import accelerate_launch_options
from grpokit.config import load_config, read_config
from grpokit.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_ACCELERATE = ROOT / "examples" / "aws_sample" / "accelerate" / "default_config.yaml"
NO_RENDEZVOUS = {"nnodes": None, "node_rank": None, "master_addr": None, "master_port": None}


def accelerate_file(tmp_path: Path, **changes) -> Path:
    data = {**yaml.safe_load(SAMPLE_ACCELERATE.read_text()), **changes}
    path = tmp_path / "accelerate.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_the_samples_fp16_reaches_the_run_on_a_gpu(tiny_config):
    config = load_config(data={**tiny_config, "distributed": str(SAMPLE_ACCELERATE)}, cuda_available=True, world_size=8)
    assert config.trl_args["fp16"] is True and config.trl_args["bf16"] is False
    assert config.trl_origins["fp16"] == f"distributed: {SAMPLE_ACCELERATE}"


def test_bf16_in_the_file_turns_bf16_on(tiny_config, tmp_path):
    path = accelerate_file(tmp_path, mixed_precision="bf16")
    config = load_config(data={**tiny_config, "distributed": str(path)}, cuda_available=True, world_size=8)
    assert (config.trl_args["bf16"], config.trl_args["fp16"]) == (True, False)


def test_on_a_cpu_mixed_precision_falls_back_with_one_warning(tiny_config):
    config = load_config(data={**tiny_config, "distributed": str(SAMPLE_ACCELERATE)}, cuda_available=False)
    assert config.grpo_config.fp16 is False
    assert any("mixed_precision: 'fp16' -> 'no' (needs a CUDA GPU" in line for line in config.override_lines)


def test_mixed_precision_contradicting_the_config_is_refused(tiny_config):
    with pytest.raises(ConfigError, match="sets mixed_precision: fp16, but the config sets bf16: True") as error:
        load_config(data={**tiny_config, "distributed": str(SAMPLE_ACCELERATE), "bf16": True}, cuda_available=True, world_size=8)
    assert "remove bf16 from the config" in error.value.fix


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"mixed_precision": "fp8"}, "mixed_precision"),
        ({"gpu_ids": "0,1"}, "gpu_ids"),
        ({"compute_environment": "AMAZON_SAGEMAKER"}, "compute_environment"),
        ({"distributed_type": "XLA"}, "distributed_type"),
        ({"dynamo_config": {"dynamo_backend": "INDUCTOR"}}, "dynamo_config"),
        ({"downcast_bf16": "yes"}, "downcast_bf16"),
        ({"num_processes": 3, "num_machines": 2}, "num_processes"),
        ({"mystery_option": 7}, "mystery_option"),
    ],
)
def test_a_key_that_cannot_be_honoured_is_refused_by_name(tiny_config, tmp_path, changes, key):
    path = accelerate_file(tmp_path, **changes)
    with pytest.raises(ConfigError, match=f"sets {key}: .*which grpokit cannot honour") as error:
        load_config(data={**tiny_config, "distributed": str(path)}, cuda_available=False)
    assert f"remove {key} from the accelerate config" in error.value.fix


def test_the_files_process_count_is_what_grpokit_train_starts(tmp_path, tiny_config, monkeypatch):
    for name in ("LOCAL_RANK", "TORCHELASTIC_RUN_ID"):
        monkeypatch.delenv(name, raising=False)
    config_path = tmp_path / "run.yaml"
    config_path.write_text(yaml.safe_dump({**tiny_config, "distributed": str(SAMPLE_ACCELERATE)}))
    assert accelerate_launch_options(read_config(config_path), NO_RENDEZVOUS) == (8, NO_RENDEZVOUS)
    two_machines = accelerate_file(tmp_path, num_machines=2, num_processes=16, machine_rank=1, main_process_ip="10.0.0.1")
    config_path.write_text(yaml.safe_dump({**tiny_config, "distributed": str(two_machines)}))
    nproc, rendezvous = accelerate_launch_options(read_config(config_path), NO_RENDEZVOUS)
    assert nproc == 8 and rendezvous == {"nnodes": 2, "node_rank": 1, "master_addr": "10.0.0.1", "master_port": None}
    given = {**NO_RENDEZVOUS, "node_rank": 0}
    assert accelerate_launch_options(read_config(config_path), given)[1]["node_rank"] == 0  # the command line wins
    monkeypatch.setenv("LOCAL_RANK", "0")  # already started by a launcher: no second launch
    assert accelerate_launch_options(read_config(config_path), NO_RENDEZVOUS) == (None, NO_RENDEZVOUS)


def test_a_launcher_count_other_than_the_files_is_used_with_a_warning(tiny_config):
    config = load_config(data={**tiny_config, "distributed": str(SAMPLE_ACCELERATE)}, cuda_available=False, world_size=2)
    assert any("num_processes: 8 -> 2 (this job runs that many processes" in line for line in config.override_lines)


@pytest.mark.slow
def test_grpokit_train_starts_the_files_process_count_on_cpus(tmp_path, tiny_config):
    path = accelerate_file(tmp_path, distributed_type="MULTI_CPU", num_processes=2, mixed_precision="no", use_cpu=True)
    config = {**tiny_config, "distributed": str(path), "per_device_train_batch_size": 2, "num_generations": 4}
    config_path = tmp_path / "run.yaml"
    config_path.write_text(yaml.safe_dump(config))
    result = subprocess.run(
        [sys.executable, "-m", "grpokit", "train", str(config_path)],
        capture_output=True, text=True, cwd=tmp_path, timeout=900, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "asks for 2 processes on 1 machine(s): starting 2 here" in result.stderr
    assert result.stdout.count("trained 2 steps") == 1, "only rank 0 prints the summary"
