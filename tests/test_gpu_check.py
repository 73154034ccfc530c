"""benchmarks/gpu_check.py, the one command for the day a GPU is lent: its CPU path and the configs it runs."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from grpokit.config import load_config

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"


def gpu_check_module():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="the path for a machine without CUDA")
def test_without_cuda_it_says_so_and_exits_cleanly(tmp_path):
    result = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, cwd=tmp_path, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("gpu_check: no CUDA GPU found") and "nothing was run or changed here" in result.stdout
    assert "Traceback" not in result.stderr and not list(tmp_path.iterdir())


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="the path for a machine without CUDA")
def test_make_gpu_check_runs_the_script(tmp_path):
    # PY: this interpreter; STAMP empty: no install step (make's own `make test` set-up has done it).
    result = subprocess.run(
        ["make", "-s", "-C", str(ROOT), "gpu-check", f"PY={sys.executable}", "STAMP="],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("gpu_check: no CUDA GPU found"), result.stdout


def test_the_configs_it_runs_are_the_converted_sample_with_only_the_check_settings_changed(tmp_path, monkeypatch):
    monkeypatch.setattr("grpokit.config.packages._installed", lambda module: True)  # a GPU machine has flash-attn
    check = gpu_check_module()
    model_dir = tmp_path / "model"
    plain = check.converted_config(tmp_path / "a", model_dir, steps=2, completion_tokens=32, vllm=False)
    with_vllm = check.converted_config(tmp_path / "b", model_dir, steps=2, completion_tokens=32, vllm=True)
    assert plain["load_in_4bit"] and plain["attn_implementation"] == "flash_attention_2" and plain["bf16"]
    assert plain["trl_defaults"] == "0.17.0" and plain["merge_weights"] and plain["generation_kwargs"] == {"min_new_tokens": 32}
    assert {k for k in with_vllm if with_vllm[k] != plain.get(k)} == {*check.VLLM_SETTINGS, "output_dir", "generation_kwargs"}
    assert with_vllm["generation_kwargs"] == {"min_tokens": 32}, "vLLM's SamplingParams name"
    model_dir.mkdir()
    (model_dir / "config.json").write_text("{}")
    config = load_config(data=plain, cuda_available=True, world_size=1)  # as on the GPU, TRL's own checks aside
    assert config.options.load_in_4bit and config.trl_args["beta"] == 0.04 and config.trl_args["max_steps"] == 3
