"""Fault injection: every bad value, file and fault a user can cause ends in one clear message.

Each case injects the fault for real (a bad value or file, a second run, a killed process, a
truncated checkpoint, a full or read-only filesystem, a stuck step, a dead server) and checks:

- the exit code (2 bad input, 1 a failure during the run, 128 + N stopped by signal N);
- one `error:` message that names the culprit (the key, the file and line, the path, the row);
- no traceback;
- nothing already written is lost (files in output_dir, complete checkpoints, metrics lines).

Most cases run `grpokit` in this process (typer's CliRunner) to keep them fast; the ones that need a
second process, a signal or a kill run it as a subprocess.
"""

from __future__ import annotations

import base64
import itertools
import json
import math
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
import yaml
from typer.testing import CliRunner

from conftest import TINY_TRAINING, write_jsonl
from grpokit.cli import app
from grpokit.outputs.checkpoint_checks import checkpoint_problem
from grpokit.outputs.checkpoints import last_complete_checkpoint

IS_ROOT = os.geteuid() == 0


# ----------------------------------------------------------------------------- running grpokit


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    @property
    def error(self) -> str:
        """The error message block (`error: ...` and its where / fix lines)."""
        starts = [match.start() for match in re.finditer(r"^error:", self.stderr, flags=re.MULTILINE)]
        assert len(starts) == 1, f"expected one error message:\n{self.stderr[-3000:]}"
        return self.stderr[starts[0] :]


def grpokit(*args: str, cwd: Path | None = None) -> Outcome:
    """`grpokit ARGS` in this process; an exception escaping the CLI fails the test with its traceback."""
    previous = Path.cwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        result = CliRunner().invoke(app, list(args), catch_exceptions=True)
    finally:
        os.chdir(previous)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        import traceback

        raise AssertionError("".join(traceback.format_exception(result.exception)) + result.output)
    return Outcome(result.exit_code, result.stdout, result.stderr)


def grpokit_process(*args: str, cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "grpokit", *args], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def assert_fails(outcome: Outcome, code: int, *culprits: str) -> str:
    """Exit `code`, one error message naming every culprit, no traceback; returns the message."""
    assert outcome.code == code, f"exit {outcome.code}, expected {code}:\n{outcome.output[-3000:]}"
    assert "Traceback" not in outcome.output, outcome.output[-3000:]
    message = outcome.error
    for culprit in culprits:
        assert culprit in message, f"{culprit!r} not in the message:\n{message}"
    return message


def wait_for(condition, *, timeout: float = 240.0, process: subprocess.Popen | None = None, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the process ended ({process.returncode}) before {what}:\n{process.stderr.read()[-3000:]}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file under `directory` and its bytes: what must not be lost."""
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def flat(text: str) -> str:
    """`text` with its line wrapping undone (log lines wrap at the console's width)."""
    return " ".join(text.split())


def metric_steps(output_dir: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (output_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A project folder: data, and an output_dir that already holds a previous run's files."""
    rows = [{"prompt": f"{a}+{b}=", "answer": str(a + b)} for a, b in zip(range(10, 42), range(50, 82))]
    write_jsonl(tmp_path / "train.jsonl", rows)
    previous = tmp_path / "out"
    previous.mkdir()
    (previous / "notes.txt").write_text("from an earlier run\n")
    return tmp_path


def base_config(workdir: Path, **changes) -> dict:
    return {**TINY_TRAINING, "train_dataset_path": "train.jsonl", "output_dir": "out", **changes}


def write_config(workdir: Path, config: dict | str | bytes, name: str = "run.yaml") -> Path:
    path = workdir / name
    if isinstance(config, bytes):
        path.write_bytes(config)
    elif isinstance(config, str):
        path.write_text(config, encoding="utf-8")
    else:
        path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture
def kept(workdir: Path) -> Iterator[None]:
    """After the test: the earlier run's files in output_dir are still there, byte for byte."""
    before = snapshot(workdir / "out")
    yield
    after = snapshot(workdir / "out")
    assert {name: after.get(name) for name in before} == before, "files of an earlier run were changed or lost"


# ----------------------------------------------------------------------------- the config file


GOOD = yaml.safe_dump({**TINY_TRAINING, "train_dataset_path": "train.jsonl", "output_dir": "out"}, sort_keys=False)

FILE_FAULTS = {
    # name: (file content, exit code, culprits)
    "yaml syntax error": (GOOD + "max_steps: [2\n", 2, ("not valid YAML", "run.yaml, line", "column")),
    "tab indentation": (GOOD + "dataset:\n\tprompt_column: q\n", 2, ("not valid YAML", "line")),
    "latin-1 bytes": (b"model_id: builtin:tiny\nsystem_prompt: caf\xe9\n", 2, ("not UTF-8", "0xe9", "line 2, column 19")),
    "utf-16 file": (GOOD.encode("utf-16"), 2, ("not UTF-8", "line 1")),
    "key written twice": (GOOD + "learning_rate: 0.5\n", 2, ("'learning_rate' is written twice", "lines", "run.yaml, line")),
    "nested key twice": (
        GOOD + "dataset:\n  prompt_column: prompt\n  max_samples: 4\n  max_samples: 8\n", 2, ("'max_samples' is written twice", "lines"),
    ),
    "a list, not a mapping": ("- model_id: builtin:tiny\n", 2, ("must be a YAML mapping", "list")),
    "a python tag": (GOOD + "run_name: !!python/object/apply:os.system [echo]\n", 2, ("not valid YAML", "python/object")),
    "empty file": ("", 2, ("required config key", "model_id")),
    "unknown key": (GOOD + "learnin_rate: 0.1\n", 2, ("unknown config key 'learnin_rate'", "did you mean 'learning_rate'")),
    "unknown nested key": (GOOD + "dataset:\n  promt_column: q\n", 2, ("'dataset.promt_column'", "dataset.prompt_column")),
    "unknown reward section key": (
        GOOD.replace("score: f1", "score: f1\n  on_eror: zero"), 2, ('"rouge_l" has no parameter "on_eror"', "rewards[0]"),
    ),
    "grpokit option of the wrong type": (GOOD + "lora_r: many\n", 2, ("'lora_r' is invalid", "many")),
    "TRL field of the wrong type": (GOOD.replace("learning_rate: 0.001", "learning_rate: fast"), 2, ("'learning_rate'", "fast", "float")),
}


@pytest.mark.parametrize("case", sorted(FILE_FAULTS))
def test_a_bad_config_file_is_one_message(case, workdir, kept):
    content, code, culprits = FILE_FAULTS[case]
    assert_fails(grpokit("validate", str(write_config(workdir, content)), cwd=workdir), code, *culprits)


def test_a_missing_config_file_and_a_directory_are_named(workdir, kept):
    assert_fails(grpokit("validate", str(workdir / "nope.yaml")), 2, "config file not found", "nope.yaml")
    assert_fails(grpokit("validate", str(workdir / "out")), 2, "is a directory", "out")


def test_bad_set_overrides_are_named(workdir, kept):
    config = str(write_config(workdir, GOOD))
    assert_fails(grpokit("validate", config, "--set", "max_step=3", cwd=workdir), 2, "'max_step'", "max_steps")
    assert_fails(grpokit("validate", config, "--set", "max_steps", cwd=workdir), 2, "--set expects KEY=VALUE")


# ----------------------------------------------------------------------------- values TRL or torch reject late


VALUE_FAULTS = {
    # name: (changes, culprits). Each of these passed `validate` before and failed (or trained wrongly) later.
    "loss_type gspo": ({"loss_type": "gspo"}, ("loss_type", "'gspo'", "dapo", "dr_grpo")),
    "negative learning rate": ({"learning_rate": -1}, ("learning_rate", "-1", "Invalid learning rate")),
    "max_steps 0": ({"max_steps": 0}, ("max_steps: 0 trains nothing",)),
    "num_train_epochs 0": ({"max_steps": -1, "num_train_epochs": 0}, ("num_train_epochs", "trains nothing")),
    "num_generations 0": ({"num_generations": 0}, ("num_generations=0", "at least 2")),
    "num_generations does not divide": ({"num_generations": 3}, ("num_generations=3", "use num_generations in [2, 4]")),
    "adam beta of 1.5": ({"adam_beta1": 1.5}, ("adam_beta1", "1.5", "beta")),
    "scheduler argument misspelt": (
        {"lr_scheduler_type": "cosine_with_restarts", "lr_scheduler_kwargs": {"num_cycle": 2}}, ("lr_scheduler_kwargs", "num_cycle"),
    ),
    "vllm_mode misspelt": ({"vllm_mode": "colocated"}, ("vllm_mode", "'colocated'", "server", "colocate")),
    "unknown optimizer": ({"optim": "adamw_bogus"}, ("adamw_bogus", "adamw_torch")),
    "scale_rewards banana": ({"scale_rewards": "banana"}, ("scale_rewards", "'banana'", "'batch', 'group', or 'none'")),
    "multi_objective_aggregation": ({"multi_objective_aggregation": "mean"}, ("multi_objective_aggregation", "'mean'")),
    "reward column removed by TRL": ({"remove_unused_columns": True}, ("answer",)),
    "prompt limit past the context": ({"max_prompt_length": 4000}, ("max_prompt_length=4,000", "context of 2,048")),
    "completions fill the context": ({"max_completion_length": 4096}, ("max_completion_length=4096", "no room for a prompt")),
    "max_prompt_length 0": ({"max_prompt_length": 0}, ("'max_prompt_length' is invalid",)),
    "stop_timeout negative": ({"stop_timeout": -5}, ("'stop_timeout' is invalid",)),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(VALUE_FAULTS))
def test_a_value_trl_would_reject_after_loading_the_model_fails_validate(case, workdir, kept):
    changes, culprits = VALUE_FAULTS[case]
    config = write_config(workdir, base_config(workdir, **changes))
    assert_fails(grpokit("validate", str(config), cwd=workdir), 2, *culprits)


@pytest.mark.parametrize(("value", "resolved"), [(False, "none"), (True, "group"), ("batch", "batch")])
def test_scale_rewards_as_trl_documents_it_is_accepted(value, resolved, workdir):
    from grpokit.config import load_config

    config = load_config(write_config(workdir, base_config(workdir, scale_rewards=value)))
    assert config.trl_args["scale_rewards"] == resolved
    assert config.grpo_config.scale_rewards == resolved


@pytest.mark.slow
def test_validate_runs_a_trial_step_and_counts_the_steps_the_run_trains(workdir, kept):
    outcome = grpokit("validate", str(write_config(workdir, base_config(workdir, max_steps=-1, num_train_epochs=2))), cwd=workdir)
    assert outcome.code == 0, outcome.output[-3000:]
    assert "trial step ok" in outcome.stdout and "the run trains 64 steps" in outcome.stdout  # 32 prompts x 2 epochs


# ----------------------------------------------------------------------------- data


def test_data_faults_name_the_file_row_or_column(workdir, kept):
    (workdir / "empty.jsonl").write_text("")
    (workdir / "broken.jsonl").write_text('{"prompt": "1+1=", "answer": "2"}\n{"prompt": "2+2=", "answer"\n')
    write_jsonl(workdir / "no_answer.jsonl", [{"prompt": "1+1="}])
    cases = [
        ({"train_dataset_path": "missing.jsonl"}, ("missing.jsonl",)),
        ({"train_dataset_path": "empty.jsonl"}, ("empty.jsonl",)),
        ({"train_dataset_path": "broken.jsonl"}, ("broken.jsonl", "line 2")),
        ({"train_dataset_path": "no_answer.jsonl"}, ("'answer'", "rouge_l")),
        ({"rewards": [{"name": "rouge_lx"}]}, ("rouge_lx", "rouge_l")),
    ]
    for changes, culprits in cases:
        config = write_config(workdir, base_config(workdir, **changes))
        assert_fails(grpokit("validate", str(config), "--no-trial-step", cwd=workdir), 2, *culprits)


def long_prompt_rows(count: int, size: int) -> list[dict]:
    return [{"prompt": "x" * size + f" {i}+1=", "answer": str(i + 1)} for i in range(count)]


@pytest.mark.slow
def test_prompts_longer_than_the_model_can_take_are_an_error_with_bounded_memory(workdir, kept):
    # The case: 16 prompts of 200 KB grew the process to 16 GB. Now: one message, memory bounded.
    write_jsonl(workdir / "long.jsonl", long_prompt_rows(16, 200_000))
    config = write_config(workdir, base_config(workdir, train_dataset_path="long.jsonl"))
    process = grpokit_process("validate", str(config), "--no-trial-step", cwd=workdir)
    _, stderr = process.communicate(timeout=600)
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    message = assert_fails(Outcome(process.returncode, "", stderr), 2, "16 of 16 prompts", "limit of 2,044 tokens", "row ")
    assert "truncate_prompts" in message
    assert peak_kib < 3 * 1024 * 1024, f"validate peaked at {peak_kib / 2**20:.1f} GiB"


@pytest.mark.slow
def test_truncate_prompts_cuts_them_to_fit_and_says_how_many(workdir, kept):
    write_jsonl(workdir / "long.jsonl", [*long_prompt_rows(3, 5_000), {"prompt": "1+1=", "answer": "2"}])
    config = write_config(workdir, base_config(workdir, train_dataset_path="long.jsonl", truncate_prompts=True, max_prompt_length=64))
    outcome = grpokit("validate", str(config), cwd=workdir)
    assert outcome.code == 0, outcome.output[-3000:]
    assert "limit 64; 3 truncated to fit" in outcome.stdout and "max 64" in outcome.stdout


# ----------------------------------------------------------------------------- rewards


NAN_REWARD = '''
import json
import math

def nan_for_odd_rows(prompts, completions, row, **kwargs):
    return [math.nan if r % 2 else 1.0 for r in row]


def nan_but_row_0(prompts, completions, row, **kwargs):
    with open("scored_rows.jsonl", "a", encoding="utf-8") as handle:  # in the run's working directory
        handle.write(json.dumps(list(row)) + "\\n")
    return [1.0 if r == 0 else math.nan for r in row]
'''


def test_a_nan_reward_is_an_error_naming_the_reward_and_row(workdir, kept):
    (workdir / "nan_reward.py").write_text(NAN_REWARD)
    write_jsonl(workdir / "rows.jsonl", [{"prompt": f"{i}+1=", "answer": str(i + 1), "row": i} for i in range(8)])
    config = write_config(workdir, base_config(workdir, train_dataset_path="rows.jsonl", rewards=[{"name": "nan_reward.py:nan_for_odd_rows"}]))
    assert_fails(grpokit("validate", str(config), "--no-trial-step", cwd=workdir), 1, "nan_for_odd_rows", "dataset row 1", "nan")


@pytest.mark.slow
def test_a_nan_reward_under_on_error_zero_is_counted_not_hidden(workdir, kept):
    (workdir / "nan_reward.py").write_text(NAN_REWARD)
    write_jsonl(workdir / "rows.jsonl", [{"prompt": f"{i}+1=", "answer": str(i + 1), "row": i} for i in range(8)])
    rewards = [{"name": "nan_reward.py:nan_but_row_0", "on_error": "zero"}]
    settings = base_config(workdir, train_dataset_path="rows.jsonl", rewards=rewards, max_steps=2)
    settings["log_completions_every"] = 0  # no before/after answers: every scoring in the log is a training step's
    config = write_config(workdir, settings)
    outcome = grpokit("train", str(config), cwd=workdir)
    assert outcome.code == 0, outcome.output[-3000:]
    lines = [json.loads(line) for line in (workdir / "out" / "metrics.jsonl").read_text().splitlines()]
    failures = [line["rewards/nan_but_row_0/failures"] for line in lines]
    scored = [json.loads(line) for line in (workdir / "scored_rows.jsonl").read_text().splitlines()]
    assert len(scored) == len(lines) == 2, "one scoring per step"
    # Every completion of a row other than 0 failed: the counts, summed step by step.
    assert failures == list(itertools.accumulate(sum(row != 0 for row in rows) for rows in scored))
    assert failures[-1] > 0
    assert f"failed on {failures[-1]} completions" in flat(outcome.stderr)
    assert all(not math.isnan(line["reward"]) for line in lines)


class ScoringServer(BaseHTTPRequestHandler):
    """Records each request's Authorization header; /fail answers 500."""

    seen: ClassVar[list[str | None]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen.append(self.headers.get("Authorization"))
        status, payload = (500, {"error": "scorer crashed"}) if self.path == "/fail" else (200, [0.5] * len(body["completions"]))
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def scoring_server() -> Iterator[int]:
    ScoringServer.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), ScoringServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_config(workdir: Path, url: str) -> Path:
    rewards = [{"name": "http", "url": url, "timeout": 2, "retries": 0}]
    return write_config(workdir, base_config(workdir, rewards=rewards))


@pytest.mark.slow
def test_a_url_password_is_sent_as_basic_auth_and_never_printed(workdir, scoring_server, kept):
    outcome = grpokit("validate", str(http_config(workdir, f"http://scorer:s3cret-pw@127.0.0.1:{scoring_server}/score")), cwd=workdir)
    assert outcome.code == 0, outcome.output[-3000:]
    assert set(ScoringServer.seen) == {"Basic " + base64.b64encode(b"scorer:s3cret-pw").decode()}
    assert "s3cret-pw" not in outcome.output
    saved = grpokit("validate", str(http_config(workdir, f"http://scorer:s3cret-pw@127.0.0.1:{scoring_server}/fail")), cwd=workdir)
    message = assert_fails(saved, 1, f"127.0.0.1:{scoring_server}/fail", "status 500")
    assert "s3cret-pw" not in saved.output and "scorer:" not in message


def test_a_dead_scoring_server_is_one_message_without_the_password(workdir, kept):
    port = closed_port()
    outcome = grpokit("validate", str(http_config(workdir, f"http://scorer:s3cret-pw@127.0.0.1:{port}/score")), "--no-trial-step", cwd=workdir)
    assert_fails(outcome, 1, f"POST http://127.0.0.1:{port}/score failed", "refused")
    assert "s3cret-pw" not in outcome.output


# ----------------------------------------------------------------------------- one run per output_dir


def tracked(workdir: Path, **changes) -> dict:
    """A long run, logged to an MLflow file store (no server needed)."""
    return base_config(
        workdir, max_steps=100_000, save_steps=1, mlflow_uri=f"file:{workdir / 'mlruns'}", mlflow_experiment_name="faults", **changes
    )


def mlflow_status(workdir: Path) -> str:
    from mlflow import MlflowClient

    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    client = MlflowClient(tracking_uri=f"file:{workdir / 'mlruns'}")
    experiment = client.get_experiment_by_name("faults")
    (run,) = client.search_runs([experiment.experiment_id])
    return run.info.status


@pytest.mark.slow
def test_a_second_run_on_one_output_dir_is_refused_and_sigterm_ends_the_first_as_killed(workdir):
    config = write_config(workdir, tracked(workdir))
    first = grpokit_process("train", str(config), cwd=workdir)
    out = workdir / "out"
    wait_for(lambda: (out / "metrics.jsonl").exists() and len(metric_steps(out)) >= 1, process=first, what="step 1")
    before = snapshot(out)
    second = grpokit("train", str(config), cwd=workdir)
    assert_fails(second, 2, "output_dir out is in use by another run", f"process {first.pid}")
    assert snapshot(out)["grpokit_config.yaml"] == before["grpokit_config.yaml"], "the refused run wrote nothing"
    assert json.loads((out / ".grpokit-run.lock").read_text())["pid"] == first.pid, "the lock stays the first run's"
    first.send_signal(signal.SIGTERM)
    _, stderr = first.communicate(timeout=120)
    assert first.returncode == 143, stderr[-3000:]
    steps = metric_steps(out)
    assert steps == list(range(1, len(steps) + 1)), "each step once: the refused run appended nothing"
    assert mlflow_status(workdir) == "KILLED"
    assert not (out / ".grpokit-run.lock").exists()


@pytest.mark.slow
def test_the_lock_of_a_killed_run_is_taken_over(workdir):
    config = write_config(workdir, base_config(workdir, max_steps=100_000, save_steps=1))
    first = grpokit_process("train", str(config), cwd=workdir)
    checkpoints = workdir / "out" / "checkpoints"
    wait_for(lambda: last_complete_checkpoint(checkpoints) is not None, process=first, what="a checkpoint")
    first.kill()  # kill -9: no cleanup, the lock file stays behind
    first.wait(timeout=60)
    assert (workdir / "out" / ".grpokit-run.lock").exists()
    resumed_from = last_complete_checkpoint(checkpoints)
    outcome = grpokit("train", str(config), "--set", f"max_steps={int(resumed_from.name.split('-')[1]) + 1}", cwd=workdir)
    assert outcome.code == 0, outcome.output[-3000:]
    assert "taking over" in flat(outcome.stderr) and f"process {first.pid}" in flat(outcome.stderr)
    assert f"resuming from out/checkpoints/{resumed_from.name}" in flat(outcome.stderr)


# ----------------------------------------------------------------------------- checkpoints


@pytest.mark.slow
def test_a_damaged_checkpoint_is_set_aside_and_the_run_resumes_from_the_one_before(workdir):
    config = write_config(workdir, base_config(workdir, save_total_limit=None))
    assert grpokit("train", str(config), cwd=workdir).code == 0
    checkpoints = workdir / "out" / "checkpoints"
    newest = checkpoints / "checkpoint-2"
    weights = newest / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 3])  # marked complete, then truncated
    truncated = weights.read_bytes()
    assert "adapter_model.safetensors" in checkpoint_problem(newest)
    earlier = snapshot(checkpoints / "checkpoint-1")

    outcome = grpokit("train", str(config), "--set", "max_steps=3", cwd=workdir)
    assert outcome.code == 0, outcome.output[-3000:]
    assert "checkpoint-2 is damaged (adapter_model.safetensors" in flat(outcome.stderr)
    assert "resuming from out/checkpoints/checkpoint-1" in flat(outcome.stderr)
    (damaged,) = checkpoints.glob("damaged-*/checkpoint-2")
    assert (damaged / "adapter_model.safetensors").read_bytes() == truncated, "set aside as it was, not deleted"
    assert snapshot(checkpoints / "checkpoint-1") == earlier
    assert metric_steps(workdir / "out") == [1, 2, 3]

    explicit = grpokit("train", str(config), "--set", f"resume={damaged}", "--set", "max_steps=4", cwd=workdir)
    assert_fails(explicit, 2, "is damaged", "adapter_model.safetensors")


# ----------------------------------------------------------------------------- the filesystem


@pytest.fixture
def small_filesystem(workdir: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs: room for a checkpoint or two of builtin:tiny, not for a run of them."""
    mount = workdir / "small"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({result.stderr.strip()}); the full-disk case needs one (root)")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.slow
def test_a_full_disk_is_named_and_the_run_resumes_once_there_is_room(workdir, small_filesystem):
    config = write_config(workdir, base_config(workdir, output_dir=str(small_filesystem / "out"), max_steps=6))
    outcome = grpokit("train", str(config), cwd=workdir)
    message = assert_fails(outcome, 1, "no space left on the device", str(small_filesystem / "out"))
    assert "run the same command again" in message
    checkpoints = small_filesystem / "out" / "checkpoints"
    complete = last_complete_checkpoint(checkpoints)
    assert complete is not None and checkpoint_problem(complete) is None, "the checkpoints written before are whole"

    subprocess.run(["mount", "-o", "remount,size=64m", str(small_filesystem)], check=True)
    resumed = grpokit("train", str(config), cwd=workdir)
    assert resumed.code == 0, resumed.output[-3000:]
    assert "resuming from" in resumed.stderr, "it continues from the checkpoint written before the disk filled up"
    assert metric_steps(small_filesystem / "out") == [1, 2, 3, 4, 5, 6]


@pytest.fixture
def read_only_dir(workdir: Path) -> Iterator[Path]:
    """A folder no write reaches: a read-only bind mount (root ignores file modes), else mode 0555."""
    folder = workdir / "readonly"
    folder.mkdir()
    if IS_ROOT:
        for command in (["mount", "--bind", str(folder), str(folder)], ["mount", "-o", "remount,ro,bind", str(folder)]):
            result = subprocess.run(command, capture_output=True, text=True, check=False)
            if result.returncode != 0:
                pytest.skip(f"cannot make a read-only bind mount ({result.stderr.strip()})")
    else:
        folder.chmod(0o555)
    try:
        yield folder
    finally:
        if IS_ROOT:
            subprocess.run(["umount", "-l", str(folder)], check=False)
        folder.chmod(0o755)


def test_a_read_only_output_dir_is_named_before_the_model_loads(workdir, read_only_dir, kept):
    config = write_config(workdir, base_config(workdir, output_dir=str(read_only_dir / "out")))
    cause = "read-only" if IS_ROOT else "permission denied"
    assert_fails(grpokit("train", str(config), cwd=workdir), 2, cause, str(read_only_dir / "out"))


@pytest.mark.parametrize("output_dir", ["a_file", "a_file/out"])
def test_an_output_path_through_a_file_is_named(output_dir, workdir, kept):
    (workdir / "a_file").write_text("not a folder\n")
    config = write_config(workdir, base_config(workdir, output_dir=output_dir))
    assert_fails(grpokit("train", str(config), cwd=workdir), 2, "a_file is a file, not a directory")
    assert (workdir / "a_file").read_text() == "not a folder\n"


def test_a_checkpoint_dir_that_is_a_file_is_named(workdir, kept):
    (workdir / "ckpt").write_text("x")
    config = write_config(workdir, base_config(workdir, checkpoint_dir="ckpt"))
    assert_fails(grpokit("train", str(config), cwd=workdir), 2, "ckpt is a file, not a directory")


# ----------------------------------------------------------------------------- signals and a stuck step


STUCK_REWARD = '''
import time
from pathlib import Path

def stuck_when_flagged(prompts, completions, **kwargs):
    while Path("stuck").exists():
        time.sleep(0.05)
    return [0.0 for _ in completions]
'''


def start_then_stick(workdir: Path, **changes) -> subprocess.Popen:
    """A training whose reward blocks once the file `stuck` exists (after a complete checkpoint)."""
    (workdir / "stuck_reward.py").write_text(STUCK_REWARD)
    rewards = [{"name": "stuck_reward.py:stuck_when_flagged"}]
    config = write_config(workdir, tracked(workdir, rewards=rewards, **changes))
    process = grpokit_process("train", str(config), cwd=workdir)
    checkpoints = workdir / "out" / "checkpoints"
    wait_for(lambda: last_complete_checkpoint(checkpoints) is not None, process=process, what="a checkpoint")
    (workdir / "stuck").touch()
    time.sleep(1.5)  # the next step is now inside the reward
    return process


@pytest.mark.slow
def test_a_stuck_step_still_ends_within_the_stop_timeout_after_sigterm(workdir):
    process = start_then_stick(workdir, stop_timeout=2)
    checkpoints = workdir / "out" / "checkpoints"
    kept_checkpoint = last_complete_checkpoint(checkpoints)
    before = snapshot(kept_checkpoint)
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    elapsed = time.monotonic() - started
    assert process.returncode == 143, stderr[-3000:]
    assert elapsed < 2 + 5 + 15, f"took {elapsed:.1f} s after SIGTERM"  # timeout + grace + interpreter exit
    assert "did not end within 2 s of signal 15" in flat(stderr)
    assert "Traceback" not in stderr
    assert snapshot(kept_checkpoint) == before and checkpoint_problem(kept_checkpoint) is None
    assert mlflow_status(workdir) == "KILLED"


@pytest.mark.slow
def test_a_second_sigterm_ends_a_stuck_step_at_once(workdir):
    process = start_then_stick(workdir, stop_timeout=600)
    process.send_signal(signal.SIGTERM)
    time.sleep(1.5)  # later than a duplicate delivery of the first
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 143, stderr[-3000:]
    assert time.monotonic() - started < 20
    assert "signal 15 again: stopping now" in flat(stderr) and "Traceback" not in stderr
    assert mlflow_status(workdir) == "KILLED"


# ----------------------------------------------------------------------------- several processes


FAILING_REWARD = '''
def always_fails(prompts, completions, **kwargs):
    raise ValueError("scorer is down")
'''


@pytest.mark.slow
def test_reward_failures_are_summed_over_ranks_under_nproc(workdir):
    (workdir / "failing_reward.py").write_text(FAILING_REWARD)
    rewards = [{"name": "failing_reward.py:always_fails", "on_error": "zero"}, {"name": "length", "target_length": 3}]
    config = write_config(workdir, base_config(workdir, rewards=rewards, gradient_checkpointing=False))
    env = {key: value for key, value in os.environ.items() if key not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    result = subprocess.run(
        [sys.executable, "-m", "grpokit", "train", str(config), "--nproc", "2"],
        cwd=workdir, env={**env, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=900, check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # 2 steps x 4 completions per rank x 2 ranks, every one failing: 16 (rank 0 alone counts 8)
    lines = [json.loads(line) for line in (workdir / "out" / "metrics.jsonl").read_text().splitlines()]
    assert [line["rewards/always_fails/failures"] for line in lines] == [8, 16]
    assert "failed on 16 completions" in flat(result.stdout + result.stderr)
    newest = last_complete_checkpoint(workdir / "out" / "checkpoints")  # written by both ranks, then verified
    assert newest is not None and newest.name == "checkpoint-2" and checkpoint_problem(newest) is None
