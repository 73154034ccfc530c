"""Several processes: DDP over gloo on the CPU, sharding presets, the --nproc launcher.

The end-to-end runs start 2 processes of the built-in tiny model for 2 steps. A user reward adds the
process's rank to each score and appends what it scored to a per-rank file, so the test can check
that TRL's logged `reward` is the mean over both ranks' completions, not rank 0's alone.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
import yaml

from conftest import skip_unless_in_ci
from grpokit.config import GrpokitOptions, RunConfig, load_config, packages
from grpokit.config.distributed import PRESET_FILES, apply_distributed, preset_path, resolve_distributed
from grpokit.errors import ConfigError
from grpokit.launch.torchrun import (
    Rendezvous,
    resolve_rendezvous,
    sagemaker_rendezvous,
    strip_launch_options,
    torchrun_command,
)

RUN_TIMEOUT_S = 300  # two processes on two shared cores: about 30 s each, with a wide margin

RANK_REWARD = '''
import json
import os
from pathlib import Path


def digits_plus_rank(prompts, completions, trainer_state=None, log_dir=".", **kwargs):
    """Digits in the completion, plus the process rank (so each rank's scores differ); logged per rank."""
    rank = int(os.environ.get("RANK", "0"))
    scores = [float(sum(ch.isdigit() for ch in completion) + rank) for completion in completions]
    record = {"step": trainer_state.global_step + 1, "scores": scores, "prompts": sorted(set(prompts))}
    with open(Path(log_dir) / f"rank{rank}.jsonl", "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\\n")
    return scores
'''


@pytest.fixture
def ddp_config(tmp_path: Path, tiny_config: dict) -> Path:
    """A config file for 2 quick steps on 2 processes with the rank-logging reward."""
    (tmp_path / "rank_reward.py").write_text(RANK_REWARD, encoding="utf-8")
    (tmp_path / "rank_scores").mkdir()
    config = {
        **tiny_config,
        "rewards": [{"name": "./rank_reward.py:digits_plus_rank", "log_dir": str(tmp_path / "rank_scores")}],
        "gradient_checkpointing": False,
        "save_strategy": "no",
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def run_command(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID"):
        env.pop(name, None)
    result = subprocess.run(command, check=False, cwd=cwd, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return result


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def check_two_rank_run(config_path: Path, result: subprocess.CompletedProcess) -> None:
    """One metrics line per step, rewards averaged over both ranks, each rank on its own prompts."""
    config = yaml.safe_load(config_path.read_text())
    out = Path(config["output_dir"])
    lines = read_jsonl(out / "metrics.jsonl")
    assert [line["step"] for line in lines] == [1, 2], "rank 0 alone writes metrics.jsonl, each step once"

    ranks = {rank: read_jsonl(config_path.parent / "rank_scores" / f"rank{rank}.jsonl") for rank in (0, 1)}
    for line in lines:
        step = line["step"]
        per_rank = {rank: next(r for r in records if r["step"] == step) for rank, records in ranks.items()}
        assert all(len(r["scores"]) == 4 for r in per_rank.values()), "each rank scores its own 4 completions"
        assert not set(per_rank[0]["prompts"]) & set(per_rank[1]["prompts"]), "each rank reads its own shard"
        both = per_rank[0]["scores"] + per_rank[1]["scores"]
        assert line["reward"] == pytest.approx(sum(both) / len(both))
        assert line["rewards/digits_plus_rank/mean"] == pytest.approx(sum(both) / len(both))

    assert (out / "adapter_model.safetensors").is_file() and (out / "grpokit_config.yaml").is_file()
    assert not (out / ".model-staging").exists()
    assert result.stdout.count("trained 2 steps") == 1, "only rank 0 prints the summary"

    from peft import AutoPeftModelForCausalLM

    model = AutoPeftModelForCausalLM.from_pretrained(str(out))
    assert any("lora_B" in name for name, _ in model.named_parameters())


# ----------------------------------------------------------------------------- end to end, 2 processes


@pytest.mark.slow
def test_nproc_2_runs_ddp_over_gloo_and_reduces_rewards_across_ranks(ddp_config: Path):
    result = run_command(
        [sys.executable, "-m", "grpokit", "train", str(ddp_config), "--nproc", "2"], ddp_config.parent
    )
    check_two_rank_run(ddp_config, result)


@pytest.mark.slow
def test_torchrun_runs_the_same_config_on_2_processes(ddp_config: Path):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    result = run_command([*command, "-m", "grpokit", "train", str(ddp_config)], ddp_config.parent)
    check_two_rank_run(ddp_config, result)


@pytest.mark.gpu
@pytest.mark.skipif(
    torch.cuda.device_count() < 2,
    reason="FSDP needs 2 CUDA GPUs here: torch can shard over gloo on the CPU, but accelerate 1.15 turns "
    "FSDP on only for GPU process groups (MULTI_GPU, ...), never MULTI_CPU, so on a CPU grpokit runs ddp instead",
)
def test_fsdp2_full_fine_tuning_saves_a_full_state_dict(ddp_config: Path):
    config = yaml.safe_load(ddp_config.read_text())
    config.update(distributed="fsdp2", use_lora=False)
    ddp_config.write_text(yaml.safe_dump(config), encoding="utf-8")
    run_command(
        [sys.executable, "-m", "grpokit", "train", str(ddp_config), "--nproc", "2"], ddp_config.parent
    )

    from safetensors.torch import load_file

    from grpokit.model.builtin import resolve_model_path

    base = load_file(str(Path(resolve_model_path("builtin:tiny")) / "model.safetensors"))
    saved = load_file(str(Path(config["output_dir"]) / "model.safetensors"))
    assert {name: tensor.shape for name, tensor in base.items()} == {name: saved[name].shape for name in base}


# ----------------------------------------------------------------------------- presets


@pytest.fixture
def fsdp_environment(monkeypatch):
    """TrainingArguments writes FSDP_CPU_RAM_EFFICIENT_LOADING into os.environ; undo it after the test."""
    monkeypatch.setenv("FSDP_CPU_RAM_EFFICIENT_LOADING", "false")


def cpu_safe(plugin_args: dict) -> dict:
    """The plugin arguments with `sync_module_states` (and `cpu_ram_efficient_loading`, which forces it on)
    off on a machine without GPU: the settings that make accelerate's FSDP plugin look up the current GPU."""
    if torch.cuda.is_available():
        return plugin_args
    return {**plugin_args, "sync_module_states": False, "cpu_ram_efficient_loading": False}


@pytest.fixture
def current_gpu_for_fsdp(monkeypatch):
    """accelerate's FSDP plugin asks for the current GPU when `sync_module_states` is on (the fsdp preset sets it);
    on a machine without one, answer as device 0 would, so the preset is built exactly as shipped."""
    if torch.cuda.is_available():
        return
    import accelerate.utils.dataclasses as accelerate_dataclasses

    monkeypatch.setattr(accelerate_dataclasses, "is_cuda_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)


def test_the_ddp_preset_sets_no_sharding(tiny_config):
    args = load_config(data={**tiny_config, "distributed": "ddp", "bf16": False}, cuda_available=True).grpo_config
    assert args.gradient_checkpointing_kwargs == {"use_reentrant": False}
    assert not args.fsdp and args.fsdp_plugin_args is None and not args.deepspeed


@pytest.mark.parametrize("name", ["fsdp", "fsdp2"])
def test_fsdp_presets_reach_accelerate_as_shipped(name, tiny_config, fsdp_environment, current_gpu_for_fsdp, monkeypatch):
    from accelerate.utils import FullyShardedDataParallelPlugin
    from torch.distributed.fsdp import BackwardPrefetch, ShardingStrategy, StateDictType
    from torch.distributed.fsdp.wrap import transformer_auto_wrap_policy
    from transformers import AutoModelForCausalLM

    from grpokit.model.builtin import resolve_model_path

    # accelerate's defaults, where a preset leaves a setting out, made different from what the presets set.
    monkeypatch.setenv("FSDP_STATE_DICT_TYPE", "SHARDED_STATE_DICT")
    monkeypatch.setenv("FSDP_AUTO_WRAP_POLICY", "NO_WRAP")
    shipped = yaml.safe_load(preset_path(name).read_text())
    args = load_config(data={**tiny_config, "distributed": name, "bf16": False}, cuda_available=True).grpo_config
    assert args.fsdp and args.gradient_checkpointing_kwargs == shipped["gradient_checkpointing_kwargs"]
    assert {key: args.fsdp_config[key] for key in shipped["fsdp_config"]} == shipped["fsdp_config"], "every key as shipped"

    plugin = FullyShardedDataParallelPlugin(**args.fsdp_plugin_args)  # the arguments accelerate gets, unmodified
    assert plugin.fsdp_version == shipped["fsdp_config"]["version"]
    assert plugin.state_dict_type == StateDictType.FULL_STATE_DICT, "the final model is gathered whole"
    assert plugin.cpu_ram_efficient_loading is True
    if name == "fsdp":
        assert plugin.reshard_after_forward == ShardingStrategy.FULL_SHARD
        assert plugin.backward_prefetch == BackwardPrefetch.BACKWARD_PRE
        assert plugin.sync_module_states is True and plugin.use_orig_params is False
    else:
        assert plugin.reshard_after_forward is True
    # One FSDP unit per transformer block: the policy accelerate builds for builtin:tiny wraps its decoder layers only.
    assert plugin.auto_wrap_policy is transformer_auto_wrap_policy
    model = AutoModelForCausalLM.from_pretrained(resolve_model_path("builtin:tiny"))
    plugin.set_auto_wrap_policy(model)
    layer = model.model.layers[0]
    assert plugin.auto_wrap_policy.keywords["transformer_layer_cls"] == {type(layer)}
    assert plugin.auto_wrap_policy(module=layer, recurse=False, nonwrapped_numel=0)
    assert not plugin.auto_wrap_policy(module=layer.mlp, recurse=False, nonwrapped_numel=0)


def test_keys_in_the_config_win_over_the_preset(tiny_config, fsdp_environment):
    data = {
        **tiny_config,
        "distributed": "fsdp2",
        "bf16": False,
        "gradient_checkpointing_kwargs": {"use_reentrant": True},
    }
    args = load_config(data=data, cuda_available=True).grpo_config
    assert args.gradient_checkpointing_kwargs == {"use_reentrant": True} and args.fsdp


@pytest.mark.parametrize("name, stage", [("deepspeed_zero2", 2), ("deepspeed_zero3", 3)])
def test_deepspeed_preset_is_a_valid_deepspeed_json(name, stage):
    data = json.loads(preset_path(name).read_text())
    assert data["zero_optimization"]["stage"] == stage
    assert data["train_micro_batch_size_per_gpu"] == "auto", "the Trainer fills batch sizes in"
    setup = resolve_distributed(name, Path.cwd())
    assert setup.kind == "deepspeed" and setup.trl_args == {"deepspeed": str(preset_path(name))}


@pytest.mark.parametrize("name, stage", [("deepspeed_zero2", 2), ("deepspeed_zero3", 3)])
def test_deepspeed_presets_as_shipped_are_completed_by_transformers(name, stage, tiny_config, request):
    from transformers import AutoModelForCausalLM
    from transformers.integrations.deepspeed import unset_hf_deepspeed_config

    from grpokit.model.builtin import resolve_model_path

    if not packages._installed("deepspeed"):
        skip_unless_in_ci("deepspeed is not installed (pip install deepspeed)")
    model = AutoModelForCausalLM.from_pretrained(resolve_model_path("builtin:tiny"))  # before ZeRO-3 is switched on
    data = {**tiny_config, "distributed": name, "bf16": False, "gradient_accumulation_steps": 2}
    args = load_config(data=data, cuda_available=True).grpo_config
    request.addfinalizer(unset_hf_deepspeed_config)  # later tests load models without ZeRO-3's partitioning
    assert args.deepspeed == str(preset_path(name)), "the shipped file itself"
    deepspeed_config = args.hf_deepspeed_config  # transformers read the file and filled in the Trainer's values
    assert deepspeed_config.is_zero3() == (stage == 3)
    deepspeed_config.trainer_config_finalize(args, model, num_training_steps=2)  # raises on a value that contradicts args
    assert '"auto"' not in json.dumps(deepspeed_config.config), "every auto value filled in"
    assert deepspeed_config.get_value("zero_optimization.stage") == stage
    assert deepspeed_config.get_value("train_micro_batch_size_per_gpu") == args.per_device_train_batch_size == 4
    assert deepspeed_config.get_value("gradient_accumulation_steps") == 2
    hidden = model.config.hidden_size
    assert deepspeed_config.get_value("zero_optimization.reduce_bucket_size") == hidden * hidden


def test_every_shipped_preset_resolves():
    for name in PRESET_FILES:
        assert preset_path(name).is_file(), name
        assert resolve_distributed(name, Path.cwd()).kind in ("ddp", "fsdp", "deepspeed")


def test_deepspeed_without_the_package_is_a_config_error_saying_how_to_install(tiny_config, monkeypatch):
    monkeypatch.setattr(packages, "_installed", lambda module: False)
    with pytest.raises(ConfigError, match="distributed: deepspeed_zero3 needs the deepspeed package") as error:
        load_config(data={**tiny_config, "distributed": "deepspeed_zero3", "bf16": False}, cuda_available=True)
    assert "pip install 'grpokit[deepspeed]'" in error.value.message
    on_a_cpu = load_config(data={**tiny_config, "distributed": "deepspeed_zero3"}, cuda_available=False)
    assert on_a_cpu.options.distributed == "ddp", "a CPU runs plain data parallel: DeepSpeed is not needed"


def test_vllm_on_a_gpu_machine_without_vllm_is_a_config_error(tiny_config, monkeypatch):
    monkeypatch.setattr(packages, "_installed", lambda module: module != "vllm")
    data = {**tiny_config, "use_vllm": True, "vllm_mode": "server", "bf16": False}
    with pytest.raises(ConfigError, match="vllm_mode: server") as error:
        load_config(data=data, cuda_available=True)
    assert "pip install" in error.value.message


def test_vllm_on_a_cpu_is_turned_off_with_a_warning(tiny_config):
    config = load_config(data={**tiny_config, "use_vllm": True}, cuda_available=False)
    assert config.trl_args["use_vllm"] is False
    assert any("use_vllm" in line for line in config.override_lines)


def test_fsdp_on_a_cpu_falls_back_to_ddp_with_a_warning(tiny_config):
    config = load_config(data={**tiny_config, "distributed": "fsdp"}, cuda_available=False)
    assert config.options.distributed == "ddp"
    assert any(line.startswith("distributed: 'fsdp' -> 'ddp'") for line in config.override_lines)
    assert not config.grpo_config.fsdp


def test_several_cpu_processes_turn_use_cpu_on(tmp_path):
    # Without use_cpu, accelerate gives each CPU process a world of its own: N separate trainings.
    options = GrpokitOptions(model_id="builtin:tiny", train_dataset_path="train.jsonl")
    config = RunConfig(options=options, trl_args={}, source="<test>", base_dir=tmp_path)
    assert apply_distributed(config, has_cuda=False, world_size=2) == []
    assert config.trl_args["use_cpu"] is True
    single = RunConfig(options=options, trl_args={}, source="<test>", base_dir=tmp_path)
    apply_distributed(single, has_cuda=False, world_size=1)
    assert "use_cpu" not in single.trl_args


def test_unknown_preset_names_the_closest(tmp_path):
    with pytest.raises(ConfigError, match="neither a preset nor an existing file") as error:
        resolve_distributed("fsdp3", tmp_path)
    assert "did you mean 'fsdp" in error.value.message


def test_an_accelerate_fsdp_config_file_is_translated(tmp_path, fsdp_environment):
    from accelerate.utils import FullyShardedDataParallelPlugin

    accelerate_config = {
        "compute_environment": "LOCAL_MACHINE",
        "distributed_type": "FSDP",
        "num_processes": 8,
        "fsdp_config": {
            "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
            "fsdp_sharding_strategy": "FULL_SHARD",
            "fsdp_offload_params": False,
            "fsdp_state_dict_type": "FULL_STATE_DICT",
            "fsdp_use_orig_params": False,
        },
    }
    (tmp_path / "fsdp_accelerate.yaml").write_text(yaml.safe_dump(accelerate_config))
    setup = resolve_distributed("fsdp_accelerate.yaml", tmp_path)
    assert setup.kind == "fsdp"
    assert setup.trl_args["fsdp_config"] == {
        "auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
        "reshard_after_forward": "FULL_SHARD",
        "cpu_offload": False,
        "state_dict_type": "FULL_STATE_DICT",
        "use_orig_params": False,
        "version": 1,
    }
    from trl import GRPOConfig

    args = GRPOConfig(output_dir=str(tmp_path / "ckpt"), bf16=False, **setup.trl_args)
    assert FullyShardedDataParallelPlugin(**cpu_safe(args.fsdp_plugin_args)).fsdp_version == 1


def test_a_user_deepspeed_json_and_accelerate_deepspeed_yaml(tmp_path):
    (tmp_path / "ds.json").write_text(json.dumps({"zero_optimization": {"stage": 1}}))
    assert resolve_distributed("ds.json", tmp_path).trl_args == {"deepspeed": str(tmp_path / "ds.json")}
    accelerate_config = {
        "distributed_type": "DEEPSPEED",
        "deepspeed_config": {"zero_stage": 3, "offload_param_device": "cpu"},
    }
    (tmp_path / "ds_accelerate.yaml").write_text(yaml.safe_dump(accelerate_config))
    zero = resolve_distributed("ds_accelerate.yaml", tmp_path).trl_args["deepspeed"]["zero_optimization"]
    assert zero == {"stage": 3, "offload_param": {"device": "cpu"}}


# ----------------------------------------------------------------------------- the --nproc launcher


def test_torchrun_command_for_one_machine_uses_a_free_port():
    argv = ["train", "c.yaml", "--nproc", "4", "--set", "max_steps=3", "-v"]
    command = torchrun_command(argv, Rendezvous(nproc_per_node=4), python="py")
    assert command == [
        "py", "-m", "torch.distributed.run", "--nproc-per-node", "4", "--shutdown-timeout", "115", "--standalone",
        "-m", "grpokit", "train", "c.yaml", "--set", "max_steps=3", "-v",
    ]  # fmt: skip


def test_torchrun_command_for_several_machines_passes_the_rendezvous_through():
    argv = [
        "train",
        "c.yaml",
        "--nproc=8",
        "--nnodes",
        "2",
        "--node-rank=1",
        "--master-addr",
        "10.0.0.1",
        "--master-port",
        "29400",
    ]
    rendezvous = resolve_rendezvous(
        8, nnodes=2, node_rank=1, master_addr="10.0.0.1", master_port=29400, env={}
    )
    command = torchrun_command(argv, rendezvous, python="py")
    assert command == [
        "py", "-m", "torch.distributed.run", "--nproc-per-node", "8", "--shutdown-timeout", "115",
        "--nnodes", "2", "--node-rank", "1", "--master-addr", "10.0.0.1", "--master-port", "29400",
        "-m", "grpokit", "train", "c.yaml",
    ]  # fmt: skip


def test_strip_launch_options_keeps_everything_else():
    argv = ["train", "c.yaml", "--set", "seed=1", "--nproc", "2", "--master-port=1234", "--verbose"]
    assert strip_launch_options(argv) == ["train", "c.yaml", "--set", "seed=1", "--verbose"]


def test_sagemaker_hosts_fill_the_rendezvous():
    env = {
        "SM_HOSTS": '["algo-1", "algo-2", "algo-3"]',
        "SM_CURRENT_HOST": "algo-2",
        "SM_MASTER_ADDR": "algo-1",
    }
    assert sagemaker_rendezvous(env) == {
        "nnodes": 3,
        "node_rank": 1,
        "master_addr": "algo-1",
        "master_port": 29500,
    }
    rendezvous = resolve_rendezvous(8, master_port=23456, env=env)  # an option given wins over SageMaker's
    assert rendezvous == Rendezvous(8, nnodes=3, node_rank=1, master_addr="algo-1", master_port=23456)
    assert sagemaker_rendezvous({}) == {}


@pytest.mark.parametrize(
    "kwargs, env, message",
    [
        ({"nnodes": 2}, {}, "needs the address"),
        ({"nnodes": 2, "node_rank": 2, "master_addr": "h"}, {}, "outside 0..1"),
        ({}, {"LOCAL_RANK": "0"}, "already started by torchrun"),
    ],
)
def test_impossible_launch_options_are_config_errors(kwargs, env, message):
    with pytest.raises(ConfigError, match=message):
        resolve_rendezvous(2, env=env, **kwargs)


@pytest.mark.parametrize(
    ("child_exit", "expected"),
    [(7, 143), (0, 0)],  # torchrun exits 1 after a forwarded stop: reported as 128 + SIGTERM; a clean exit stays 0
)
def test_launcher_forwards_sigterm_and_reports_the_stop(tmp_path, child_exit, expected):
    ready = tmp_path / "ready"
    child = textwrap.dedent(f"""
        import pathlib, signal, sys, time
        signal.signal(signal.SIGTERM, lambda *a: sys.exit({child_exit}))
        pathlib.Path({str(ready)!r}).write_text("ready")
        time.sleep(60)
    """)
    parent = (
        "import sys; from grpokit.launch.torchrun import run_forwarding_signals; "
        f"sys.exit(run_forwarding_signals([sys.executable, '-c', {child!r}]))"
    )
    process = subprocess.Popen([sys.executable, "-c", parent])
    deadline = time.monotonic() + 30
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == expected


def test_train_help_lists_the_launch_options():
    from typer.testing import CliRunner

    from grpokit.cli import app

    result = CliRunner().invoke(app, ["train", "--help"], terminal_width=200)
    assert result.exit_code == 0
    for option in ("--nproc", "--nnodes", "--node-rank", "--master-addr", "--master-port"):
        assert option in result.output
