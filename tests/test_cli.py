"""The command line: help for every command, exit codes, one clear error and no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from grpokit.cli import app


def grpokit(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "grpokit", *args], capture_output=True, text=True, cwd=cwd, timeout=600, check=False
    )


def command_paths(typer_app) -> list[list[str]]:
    import typer.main

    group = typer.main.get_command(typer_app)
    paths = []

    def walk(command, prefix):
        for name, sub in getattr(command, "commands", {}).items():
            paths.append([*prefix, name])
            walk(sub, [*prefix, name])

    walk(group, [])
    return paths


@pytest.mark.parametrize("path", [[]] + command_paths(app), ids=lambda p: " ".join(p) or "grpokit")
def test_every_command_has_help(path):
    from typer.testing import CliRunner

    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def write(tmp_path: Path, config: dict) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


@pytest.mark.slow
def test_validate_accepts_a_good_config(tmp_path, tiny_config):
    result = grpokit("validate", str(write(tmp_path, tiny_config)))
    assert result.returncode == 0, result.stderr
    assert "config ok" in result.stdout and "data ok" in result.stdout and "model ok" in result.stdout
    assert "rouge_l" in result.stdout and "length" in result.stdout


@pytest.mark.slow
def test_validate_runs_rewards_counted_in_tokens(tmp_path, tiny_config):
    tiny_config["rewards"] = [
        {"name": "length", "unit": "tokens", "target_length": 3},
        {"name": "overlong_penalty", "max_completion_length": 10, "cache_length": 4},
    ]
    result = grpokit("validate", str(write(tmp_path, tiny_config)))
    assert result.returncode == 0, result.stderr
    assert "overlong_penalty" in result.stdout


@pytest.mark.slow
@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"learning_rat": 1e-5}, "did you mean 'learning_rate'"),
        ({"per_device_train_batch_size": 3}, "num_generations=4 must divide"),
        ({"train_dataset_path": "/nonexistent/train.jsonl"}, "/nonexistent/train.jsonl"),
        ({"rewards": [{"name": "rouge_l", "reference_column": "solution"}]}, "solution"),
        ({"rewards": [{"name": "no_such_reward"}]}, "no_such_reward"),
        ({"model_id": "./no/such/model"}, "model directory not found"),
        ({"lora_target_modules": ["q_proj", "v_projj"]}, "v_projj"),
        ({"rewards": [{"name": "regex"}]}, 'reward "regex" needs the parameter pattern'),
        ({"resume": "nevr"}, "did you mean 'never'?"),
    ],
)
def test_validate_rejects_broken_configs_with_exit_2(tmp_path, tiny_config, change, expected):
    result = grpokit("validate", str(write(tmp_path, {**tiny_config, **change})))
    assert result.returncode == 2, result.stdout + result.stderr
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_usage_error_exits_2():
    assert grpokit("train").returncode == 2


@pytest.mark.slow
def test_train_cli_saves_model_and_says_where(tmp_path, tiny_config):
    result = grpokit("train", str(write(tmp_path, tiny_config)), "--set", "max_steps=1")
    assert result.returncode == 0, result.stderr
    assert "model saved to" in result.stdout and tiny_config["output_dir"] in result.stdout.replace("\n", "")
    assert (Path(tiny_config["output_dir"]) / "adapter_model.safetensors").is_file()


def test_models_lists_builtin_tiny():
    result = grpokit("models")
    assert result.returncode == 0 and "builtin:tiny" in result.stdout


# Exit handlers that see the interpreter's state: one registered before grpokit's (it runs after it) and one
# after (it runs before); an object still reachable at exit, in a reference cycle, holds an unclosed file with
# unwritten text (a normal exit writes it: the shutdown collects the cycle; frozen, it would not be collected).
EXIT_ORDER = """
import atexit, gc, sys
atexit.register(lambda: print("after grpokit's handler: frozen", gc.get_freeze_count() > 0))
from grpokit.cli.common import lighter_interpreter_exit
lighter_interpreter_exit()
atexit.register(lambda: print("before grpokit's handler: frozen", gc.get_freeze_count() > 0))
class Holder:
    pass
holder = Holder()
holder.me, holder.file = holder, open(sys.argv[1], "w")  # a cycle: only a garbage collection closes the file
holder.file.write("written " * 1000)
"""


def test_the_exit_collects_garbage_then_freezes_after_every_later_exit_handler(tmp_path):
    unclosed = tmp_path / "unclosed.txt"
    result = subprocess.run([sys.executable, "-c", EXIT_ORDER, str(unclosed)], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["before grpokit's handler: frozen False", "after grpokit's handler: frozen True"]
    assert unclosed.read_text() == "written " * 1000, "open files are flushed before the freeze"


def test_every_command_exits_through_the_lighter_exit():
    code = (
        "import atexit, gc, sys; atexit.register(lambda: print('frozen at exit:', gc.get_freeze_count() > 0)); "
        "sys.argv = ['grpokit', 'models']; from grpokit.cli import main; main()"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert "builtin:tiny" in result.stdout and result.stdout.splitlines()[-1] == "frozen at exit: True"


@pytest.mark.slow
def test_nproc_checks_the_config_for_the_job_before_starting_ranks(tmp_path, tiny_config):
    # 3 prompts per process x 2 processes = 6: no whole groups of 4. One message, exit 2, no ranks started.
    result = grpokit("train", str(write(tmp_path, tiny_config)), "--nproc", "2", "--set", "per_device_train_batch_size=3")
    assert result.returncode == 2, result.stderr
    assert "processes (2) = 6" in result.stderr and result.stderr.count("error:") == 1
    assert not Path(tiny_config["output_dir"]).exists()


@pytest.mark.slow
def test_ctrl_c_checkpoints_then_exits_130(tmp_path, tiny_config):
    import json
    import signal
    import time

    from grpokit.outputs.checkpoints import last_complete_checkpoint

    config = write(tmp_path, {**tiny_config, "max_steps": 100_000, "save_steps": 100_000})
    process = subprocess.Popen(
        [sys.executable, "-m", "grpokit", "train", str(config)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    metrics = Path(tiny_config["output_dir"]) / "metrics.jsonl"
    deadline = time.monotonic() + 300
    while not (metrics.exists() and len(metrics.read_text().splitlines()) >= 2):
        assert process.poll() is None and time.monotonic() < deadline, "training did not reach step 2"
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr[-2000:]
    checkpoint = last_complete_checkpoint(Path(tiny_config["output_dir"]) / "checkpoints")
    assert checkpoint is not None
    assert json.loads((checkpoint / "trainer_state.json").read_text())["global_step"] >= 2
