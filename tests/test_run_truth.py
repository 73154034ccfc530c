"""A run tells the truth, in few words (issue 19): each case the issue reproduced on main, as a test.

1. a run that learned nothing is never "healthy", and a short run is still told;
2. a run that trained and saved exits 0 whatever it logged; its last step is always logged;
3. logs a job can keep: one record per line, no carriage returns, few lines before step 1, each
   warning once, integers as integers, no third-party lecture;
4. a Hub id without a network: one message within 5 s;
5. `grpokit probe`: progress, a default that finishes in about a minute, the next step;
6. the report: versions, hardware, eval results, summary names, config differing first, before/after
   on the same prompts, no file cited that is not there; `compare` says where it wrote;
7. the README: times with the install, where the extras come from, the chat layout, offline.
"""

from __future__ import annotations

import doctest
import importlib
import importlib.metadata
import io
import json
import logging
import os
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from grpokit.config.health import HealthOptions
from grpokit.outputs.health_summary import health_findings
from grpokit.outputs.report_health import health_lines, health_rows, health_verdict
from grpokit.outputs.run_record import load_run
from grpokit.trainer.health import HealthCallback
from grpokit.trainer.health_checks import HealthMonitor

ROOT = Path(__file__).resolve().parents[1]
RUN_TIMEOUT_S = 600
# a log record as a job's log stream gets it: one line, time, level, logger
RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.]+: .")
ERROR_BLOCK = re.compile(r"^(error: |  where: |  fix: )")
CONSTANT_REWARD = "def constant(prompts, completions, **kwargs):\n    return [1.0 for _ in completions]\n"


def grpokit(*args: str, cwd: Path, env: dict | None = None, drop: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """The CLI in a process of its own, stdout and stderr to pipes (not a terminal), as a job runs it."""
    environment = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID", *drop):
        environment.pop(name, None)
    command = [sys.executable, "-m", "grpokit", *args]
    return subprocess.run(command, cwd=cwd, env=environment, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False)


def assert_job_log(stderr: str, stdout: str) -> list[str]:
    """Every stderr line is one whole record (or the error block); no carriage return anywhere. Returns the lines."""
    assert "\r" not in stderr and "\r" not in stdout, "a carriage-return progress bar"
    lines = stderr.splitlines()
    split = [line for line in lines if line and not RECORD.match(line) and not ERROR_BLOCK.match(line)]
    assert split == [], f"lines that are not whole records: {split[:5]}"
    return lines


# ----------------------------------------------------------------------------- 1. health over the whole run


def rows_of(**values) -> list[dict]:
    return [{"step": step, **values} for step in range(1, 13)]


def test_a_run_that_learned_nothing_is_told_so_in_three_findings_worked_out_by_hand():
    metrics = rows_of(grad_norm=0.0, loss=0.0, **{"completions/clipped_ratio": 1.0, "frac_reward_zero_std": 1.0})
    findings = health_findings(metrics, {"max_completion_length": 32})
    assert [f.text for f in findings] == [
        "grad norm was 0 on every step (12 of 12): nothing was learned",
        "every completion was cut at max_completion_length=32",
        "all completions of a prompt got the same reward in 100% of groups",
    ]
    half = rows_of(grad_norm=1.0, **{"completions/clipped_ratio": 0.5, "frac_reward_zero_std": 0.25})
    assert [f.name for f in health_findings(half, None)] == ["truncation"], "50% cut on average: told; 25% flat: not"
    assert "50% of completions were cut" in health_findings(half, None)[0].text
    logged_every_10 = [{"step": 10, "grad_norm": 0.0}, {"step": 20, "grad_norm": 0.0}]
    assert health_findings(logged_every_10, None)[0].text.startswith("grad norm was 0 on every logged step (2 logs over 20 steps)")
    assert health_findings([], None) == []


def test_a_run_stopped_before_max_steps_is_not_called_healthy():
    rows = [{"step": step, "grad_norm": 0.5} for step in range(1, 64)]
    (finding,) = health_findings(rows, {"max_steps": 120})
    assert (finding.name, finding.text) == ("unfinished", "the run ended at step 63 of 120 (max_steps): it was stopped before the end")
    assert health_findings(rows, {"max_steps": 63}) == [] and health_findings(rows, {"max_steps": -1}) == []
    assert health_findings(rows, None) == []


def test_a_run_with_findings_is_never_healthy_and_the_verdict_has_three_levels(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    metrics = rows_of(grad_norm=0.0, **{"health/zero_spread": 0, "health/truncation": 0})
    (out / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in metrics))
    run = load_run(out)
    rows, findings = health_rows(run), health_findings(run.metrics, run.config)
    verdict = health_verdict(rows, findings)
    assert verdict.status == "warnings" and verdict.css == "warn" and "nothing was learned" in verdict.text
    assert health_lines(verdict, rows, findings)[:2] == ["health: warnings", f"  {findings[0].text}. Fix: {findings[0].fix}"]
    assert health_verdict(rows, []).status == "healthy", "the same checks without the finding: green"


def test_default_patience_fits_a_12_step_run_and_one_the_config_sets_is_kept(tmp_path):
    args = SimpleNamespace(logging_strategy="steps", logging_steps=1, output_dir=str(tmp_path), fp16=False)
    state = SimpleNamespace(max_steps=12, global_step=0, is_world_process_zero=True)
    control = SimpleNamespace(should_save=False, should_training_stop=False)
    callback = HealthCallback(HealthOptions(truncation={"patience": 8}), tmp_path)
    callback.on_train_begin(args, state, control)
    patience = {check.name: check.patience for check in callback.monitor.checks}
    assert patience["zero_spread"] == 3 and patience["length"] == 3, "a quarter of 12 logs, at least 3"
    assert patience["truncation"] == 8 and patience["nonfinite"] == 1 and patience["reward_hacking"] == 3
    for step in range(1, 4):  # 12 steps of flat groups: the default stop comes at step 3, not after 50 logs
        state.global_step = step
        callback.on_log(args, state, control, logs={"frac_reward_zero_std": 1.0, "loss": 0.0})
    assert callback.trip is not None and (callback.trip.check, callback.trip.step) == ("zero_spread", 3)
    long_run = HealthMonitor(HealthOptions())
    long_run.fit_to_run(1000)
    assert {c.name: c.patience for c in long_run.checks}["zero_spread"] == 50, "an overnight run keeps the defaults"


@pytest.mark.slow
def test_a_constant_reward_cut_at_one_token_ends_with_warnings_on_the_console_and_the_report(tmp_path, tiny_config):
    (tmp_path / "constant.py").write_text(CONSTANT_REWARD, encoding="utf-8")
    config = {**tiny_config, "max_completion_length": 1, "rewards": [{"name": "./constant.py:constant"}], "save_steps": 100}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    result = grpokit("train", "run.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert_job_log(result.stderr, result.stdout)
    assert "health: warnings" in result.stdout
    for text in ("grad norm was 0 on every step (2 of 2): nothing was learned", "every completion was cut at max_completion_length=1",
                 "all completions of a prompt got the same reward in 100% of groups"):  # fmt: skip
        assert text in result.stdout
    html = (Path(tiny_config["output_dir"]) / "report.html").read_text(encoding="utf-8")
    assert 'class="verdict warn"' in html and 'data-finding="nothing_learned"' in html and "healthy" not in html.split("<h2>Summary")[0]


# ----------------------------------------------------------------------------- 2 + 3. exit 0, the last step, the log


def converted_aws_sample(tmp_path: Path, addition_jsonl: Path) -> Path:
    """examples/aws_sample/args.yaml converted, on builtin:tiny and local data; logging_steps stays the sample's 10."""
    from grpokit.commands.convert import run_convert

    converted = tmp_path / "aws.yaml"
    run_convert("aws-sample", ROOT / "examples" / "aws_sample" / "args.yaml", converted, trl_version=None, accelerate_config=None, force=True)
    config = yaml.safe_load(converted.read_text(encoding="utf-8"))
    for key in ("mlflow_uri", "mlflow_experiment_name", "checkpoint_dir"):
        config.pop(key, None)
    config.update(model_id="builtin:tiny", train_dataset_path=str(addition_jsonl), test_dataset_path=str(addition_jsonl),
                  output_dir=str(tmp_path / "out"), max_steps=2, max_completion_length=8)  # fmt: skip
    assert config["logging_steps"] == 10 and config["bf16"] and config["load_in_4bit"]
    converted.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return converted


@pytest.mark.slow
def test_the_converted_aws_sample_logging_every_10_steps_trains_2_exits_0_and_its_log_is_fit_for_a_job(tmp_path, addition_jsonl):
    config = converted_aws_sample(tmp_path, addition_jsonl)
    result = grpokit("train", str(config), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    out = tmp_path / "out"
    assert "trained 2 steps" in result.stdout and "report: " in result.stdout and "health: " in result.stdout
    assert [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [2], "the last step is logged"

    lines = assert_job_log(result.stderr, result.stdout)
    before_step_1 = lines[: next(i for i, line in enumerate(lines) if " step 2/2 " in line or ": step 2/2" in line)]
    assert len(before_step_1) <= 15, "\n".join(before_step_1)
    fallbacks = [line.split(": ", 1)[1] for line in lines if " WARNING grpokit.config: " in line]
    assert len(fallbacks) == 3 and len(set(fallbacks)) == 3, "each CPU fallback once (bf16, flash attention, dtype; 4-bit runs on the CPU)"
    assert "save_steps=50," in result.stderr and "save_steps=50.0" not in result.stderr, "integers shown as integers"
    assert f"(the table: {out / 'trl_differences.txt'})" in result.stderr
    assert "save_steps: 50 (TRL" in (out / "trl_differences.txt").read_text()
    assert "Loading weights" not in result.stderr and "Writing model shards" not in result.stderr
    assert "Traceback" not in result.stderr and "UserWarning" not in result.stderr

    info = json.loads((out / "run_info.json").read_text())
    assert info["versions"]["trl"] and info["versions"]["torch"] and info["hardware"]["cpu_cores"]
    before_after = [json.loads(line) for line in (out / "before_after_completions.jsonl").read_text().splitlines()]
    steps = {record["step"] for record in before_after}
    assert steps == {0, 2} and len({r["prompt"] for r in before_after if r["step"] == 0}) == len(before_after) // 2
    assert {r["prompt"] for r in before_after if r["step"] == 0} == {r["prompt"] for r in before_after if r["step"] == 2}


def test_validate_says_when_logging_steps_exceeds_max_steps_and_warns_each_fallback_once(tmp_path, tiny_config):
    from typer.testing import CliRunner

    from grpokit.cli import app

    config = {**tiny_config, "logging_steps": 10, "max_steps": 6, "bf16": True, "attn_implementation": "flash_attention_2"}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    result = CliRunner().invoke(app, ["validate", str(tmp_path / "run.yaml"), "--no-trial-step"])
    assert result.exit_code == 0, result.output
    assert "note: logging_steps 10 is more than max_steps 6: the run logs only its last step" in " ".join(result.stdout.split())
    assert "save_steps: 1 (TRL" in result.stdout, "an integer stays an integer"
    assert result.stderr.count("bf16: True -> False (needs a CUDA GPU") == 1 and result.stderr.count("attn_implementation: 'flash_attention_2' -> 'sdpa' (needs a CUDA GPU)") == 1


def test_one_line_records_each_config_warning_once_and_the_verbosity_switches():
    from grpokit.cli.common import setup_logging
    from grpokit.cli.log_format import OncePerCommand, OneLineFormatter, plain_handler

    record = logging.LogRecord("grpokit.config", logging.WARNING, __file__, 1, "first\n  second\r", None, None)
    assert re.match(r"^\S+ \S+ WARNING grpokit.config: first \| second$", OneLineFormatter().format(record))
    once = OncePerCommand()
    assert [once.filter(record), once.filter(record)] == [True, False]
    other = logging.LogRecord("grpokit.trainer", logging.INFO, __file__, 1, "step", None, None)
    assert [once.filter(other), once.filter(other)] == [True, True], "only the config's facts are said once"
    handler, real, swapped = plain_handler(), sys.stderr, io.StringIO()
    sys.stderr = swapped  # as a test runner swaps it for one command, then closes it
    try:
        handler.emit(other)
    finally:
        sys.stderr = real
    assert swapped.getvalue().endswith("INFO grpokit.trainer: step\n")
    swapped.close()
    handler.emit(other)  # writes to today's stderr, not the closed one (no "I/O operation on closed file")
    try:
        setup_logging(quiet=True)
        assert logging.getLogger("grpokit").level == logging.WARNING
        setup_logging(verbose=True)
        assert logging.getLogger("grpokit").level == logging.DEBUG
    finally:
        setup_logging()
    assert logging.getLogger("grpokit").level == logging.INFO
    cpu_line = logging.LogRecord("DeepSpeed", logging.WARNING, __file__, 1, "Setting accelerator to CPU. If you have GPU", None, None)
    other_line = logging.LogRecord("DeepSpeed", logging.WARNING, __file__, 1, "ZeRO stage 3 needs ...", None, None)
    deepspeed_logger = logging.getLogger("DeepSpeed")
    assert (deepspeed_logger.filter(cpu_line), deepspeed_logger.filter(other_line)) == (False, True)
    setup_logging(verbose=True)
    try:
        assert deepspeed_logger.filter(cpu_line), "--verbose shows it"
    finally:
        setup_logging()
    assert len(deepspeed_logger.filters) == 1, "set up once however often logging is"
    # PEFT imports bitsandbytes in every run when it is installed; its advice to fetch a kernel from the Hub
    # is not the run's to act on, quantized or not (seen in a full-precision `grpokit train` log)
    advice = logging.LogRecord("bitsandbytes.backends.cpu.ops", logging.WARNING, __file__, 1,
                               "Failed to load CPU gemm_4bit_forward from kernels-community: No module named 'kernels'", None, None)
    other_bnb = logging.LogRecord("bitsandbytes.backends.cpu.ops", logging.WARNING, __file__, 1, "something else", None, None)
    bnb_logger = logging.getLogger("bitsandbytes.backends.cpu.ops")
    assert (bnb_logger.filter(advice), bnb_logger.filter(other_bnb)) == (False, True)


def test_the_new_modules_examples_hold():
    for name in ("grpokit.outputs.health_summary", "grpokit.trainer.health_patience", "grpokit.outputs.report_sections",
                 "grpokit.cli.log_format", "grpokit.commands.validate", "grpokit.trainer.callbacks", "grpokit.outputs.run_info",
                 "grpokit.commands.probe_figures", "grpokit.formatting", "grpokit.outputs.metrics"):  # fmt: skip
        result = doctest.testmod(importlib.import_module(name))
        assert result.failed == 0 and result.attempted > 0, name


# ----------------------------------------------------------------------------- 4. a Hub id without a network


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # nothing listens there once the socket is closed


@pytest.fixture
def silent_endpoint():
    """An endpoint that accepts connections and never answers (a firewall that drops, a dead proxy)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join()
    for connection in held:
        connection.close()
    server.close()


TIMED_LOAD = """
import json, sys, time
from grpokit.config import load_config
from grpokit.errors import GrpokitError
from grpokit.model.loading import load_tokenizer
options = load_config(data=json.loads(sys.argv[1]), cuda_available=False).options
started = time.perf_counter()
try:
    load_tokenizer(options)
    print(json.dumps({"seconds": time.perf_counter() - started, "error": None}))
except GrpokitError as error:
    print(json.dumps({"seconds": time.perf_counter() - started, "error": error.message}))
"""
OFFLINE_SWITCHES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")


def timed_load(config: dict, endpoint: str, tmp_path: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    environment = {key: value for key, value in os.environ.items() if key not in OFFLINE_SWITCHES}
    environment.update(HF_ENDPOINT=endpoint, HF_HUB_CACHE=str(tmp_path / "hf-cache"), **(env or {}))
    return subprocess.run([sys.executable, "-c", TIMED_LOAD, json.dumps(config)], env=environment, capture_output=True, text=True,
                          timeout=RUN_TIMEOUT_S, check=False)  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("endpoint", ["closed", "silent"])
def test_a_hub_id_without_a_network_answers_within_5_s_in_one_message(tmp_path, tiny_config, endpoint, request):
    url = f"http://127.0.0.1:{closed_port()}" if endpoint == "closed" else request.getfixturevalue("silent_endpoint")
    result = timed_load({**tiny_config, "model_id": "some-org/some-model"}, url, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["seconds"] < 5.0, outcome
    assert outcome["error"].startswith("cannot download model_id 'some-org/some-model': the Hugging Face Hub")
    assert "Retrying" not in result.stderr and "Retry" not in result.stderr


def fill_hub_cache(cache: Path, repo_id: str) -> None:
    """The Hub cache's layout (models--org--name/snapshots/<commit>/, refs/main) with builtin:tiny's files."""
    import shutil

    from grpokit.model.builtin import resolve_model_path

    repo = cache / f"models--{repo_id.replace('/', '--')}"
    commit = "0" * 40
    shutil.copytree(resolve_model_path("builtin:tiny"), repo / "snapshots" / commit)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)


@pytest.mark.slow
def test_a_cached_hub_id_loads_from_the_cache_when_the_hub_is_unreachable(tmp_path, tiny_config):
    fill_hub_cache(tmp_path / "hf-cache", "some-org/tiny")
    result = timed_load({**tiny_config, "model_id": "some-org/tiny"}, f"http://127.0.0.1:{closed_port()}", tmp_path)
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["error"] is None and outcome["seconds"] < 5.0, (outcome, result.stderr[-2000:])
    assert "Retry" not in result.stderr


@pytest.mark.slow
def test_validate_with_a_hub_id_and_no_network_is_one_error_without_retries(tmp_path, tiny_config):
    (tmp_path / "run.yaml").write_text(yaml.safe_dump({**tiny_config, "model_id": "some-org/some-model"}), encoding="utf-8")
    env = {"HF_ENDPOINT": f"http://127.0.0.1:{closed_port()}", "HF_HUB_CACHE": str(tmp_path / "hf-cache")}
    result = grpokit("validate", "run.yaml", "--no-trial-step", cwd=tmp_path, env=env, drop=OFFLINE_SWITCHES)
    assert result.returncode == 2, result.stderr[-3000:]
    assert_job_log(result.stderr, result.stdout)
    assert result.stderr.count("error: ") == 1 and "point model_id at a local folder" in result.stderr
    assert "Retry" not in result.stderr and "trust_remote_code" not in result.stderr


# ----------------------------------------------------------------------------- 5. probe


def test_the_probe_says_the_next_step_when_groups_are_flat_or_cut():
    from grpokit.commands.probe_figures import next_steps, summarize_probe

    def figures(totals, truncated):
        return summarize_probe(rows=list(range(len(totals))), prompts=["p"] * len(totals), totals=totals,
                               completion_lengths=[[4] * len(t) for t in totals], truncated=truncated,
                               prompt_lengths=[3] * len(totals), pass_threshold=1.0, generation_seconds=1.0)  # fmt: skip

    flat_and_cut = figures([[1.0, 1.0], [1.0, 1.0], [0.0, 1.0]], [[True, True]] * 3)
    steps = next_steps(flat_and_cut, temperature=0.2, max_completion_length=32, dynamic_sampling=False)
    assert [step.split(":")[0] for step in steps] == ["max_completion_length", "temperature", "always solved", "dynamic_sampling", "filtering"]
    assert "--set max_completion_length=64" in steps[0] and "2 of 3 prompts passed on every sample" in steps[2]
    healthy = figures([[0.0, 1.0], [1.0, 0.0]], [[False, False]] * 2)
    assert next_steps(healthy, temperature=1.0, max_completion_length=32, dynamic_sampling=False) == []


def test_the_probe_default_is_16_prompts_in_the_cli_and_the_library():
    from grpokit.cli import DEFAULT_PROBE_ROWS
    from grpokit.commands.probe import ProbeOptions

    assert ProbeOptions().rows == DEFAULT_PROBE_ROWS == 16


@pytest.mark.slow
def test_the_probe_shows_progress_with_the_time_left_and_ends_with_the_next_step(tmp_path, tiny_config):
    (tmp_path / "constant.py").write_text(CONSTANT_REWARD, encoding="utf-8")
    config = {**tiny_config, "rewards": [{"name": "./constant.py:constant"}]}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    result = grpokit("probe", "run.yaml", "--rows", "4", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = assert_job_log(result.stderr, result.stdout)
    progress = [line for line in lines if re.search(r"grpokit.probe: \d+/16 completions \(\d+%\), .* elapsed, about .* left", line)]
    assert progress and progress[-1].split("grpokit.probe: ")[1].startswith("16/16 completions (100%)")
    assert "100% of groups with zero reward spread" in result.stdout
    assert "next step: dynamic_sampling:" in result.stdout and "next step: filtering:" in result.stdout


# ----------------------------------------------------------------------------- 6. the report, compare


def write_run(out: Path, *, health_events: bool = False) -> Path:
    from grpokit.outputs.run_info import write_run_info

    out.mkdir(parents=True)
    metrics = [{"step": s, "reward": 0.1 * s, "grad_norm": 1.0, "step_time": 0.5, "frac_reward_zero_std": 0.1, "health/zero_spread": 0}
               for s in range(1, 5)]  # fmt: skip
    (out / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in metrics))
    config = {"model_id": "builtin:tiny", "learning_rate": 0.0001, "seed": 0, "use_lora": False, "lora_r": 16}
    (out / "grpokit_config.yaml").write_text(yaml.safe_dump(config))
    write_run_info(out, differences=[SimpleNamespace(key="learning_rate", value=0.0001, trl_default=1e-6, origin="set in the config", in_trl=True)])
    before_after = [{"step": step, "prompt": f"{a}+1=", "answer": str(a + 1), "completion": str(a + step // 4), "reward": float(step == 4)}
                    for step in (0, 4) for a in (1, 2)]  # fmt: skip
    (out / "before_after_completions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in before_after))
    (out / "sample_completions.jsonl").write_text(json.dumps({"step": 1, "prompt": "9+9=", "completion": "x", "reward": 0.0}) + "\n")
    (out / "eval").mkdir()
    (out / "eval" / "eval.json").write_text(json.dumps({
        "model": str(out), "split": "test", "num_rows": 8, "num_samples": 1, "num_completions": 8,
        "reward_means": {"exact_match": 0.75}, "total_mean": 0.75, "accuracy": 0.75, "pass@1": 0.75, "reference_column": "answer",
        "compare": {"base": {"model": "builtin:tiny", "reward_means": {"exact_match": 0.5}, "total_mean": 0.5, "accuracy": 0.5, "pass@1": 0.5},
                    "difference": {"exact_match": 0.25, "total": 0.25, "accuracy": 0.25, "pass@1": 0.25}},
    }))  # fmt: skip
    if health_events:
        (out / "health.jsonl").write_text(json.dumps({"step": 2, "check": "truncation", "status": "warned", "message": "cut"}) + "\n")
    return out


def test_the_report_shows_setup_eval_named_summary_config_differing_first_and_before_after(tmp_path):
    from grpokit.outputs.report import write_report

    out = write_run(tmp_path / "run")
    html = write_report(out).html.read_text(encoding="utf-8")
    for version in ("trl", "transformers", "torch", "grpokit"):
        assert f"<tr><th>{version}</th><td>{importlib.metadata.version(version)}</td></tr>" in html
    assert "<tr><th>GPUs</th><td>none (CPU)</td></tr>" in html and "cores" in html
    evaluation = html.split('<table id="evaluation">')[1].split("</table>")[0]
    assert "<th>accuracy</th><td class=\"num\">0.750</td><td class=\"num\">0.500</td><td class=\"num\">+0.250</td>" in evaluation
    assert "<th>training time (the steps only)</th><td class=\"num\">2 s</td>" in html, "names and units, not snake_case keys"
    differs = html.split('<table id="config-differs">')[1].split("</table>")[0]
    assert set(re.findall(r"<tr><td><code>(.*?)</code>", differs)) == {"model_id", "learning_rate", "use_lora", "lora_r"}
    assert "seed: 0" in html.split('<pre id="config">')[1], "the rest after the differing values"
    completions = html.split('<table id="completions">')[1].split("</table>")[0]
    assert completions.count("<tr><td><code>") == 2 and 'class="muted">-' not in completions, "the same prompts on both sides"
    assert "before training and after it: step 0 (before) and step 4 (after)" in html
    assert "health.jsonl" not in html, "no check fired: no health.jsonl, and the page does not cite it"


def test_the_report_cites_health_jsonl_when_a_check_wrote_it(tmp_path):
    from grpokit.outputs.report import write_report

    html = write_report(write_run(tmp_path / "run", health_events=True)).html.read_text(encoding="utf-8")
    assert "<code>health.jsonl</code>" in html and 'class="verdict warn"' in html


def test_compare_says_where_it_wrote(tmp_path):
    from typer.testing import CliRunner

    from grpokit.cli import app

    a, b = write_run(tmp_path / "a"), write_run(tmp_path / "b")
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        result = CliRunner().invoke(app, ["compare", str(a), str(b)])
    finally:
        os.chdir(cwd)
    assert result.exit_code == 0, result.output
    assert f"compare: wrote {tmp_path / 'compare.html'} (2 runs side by side)" in " ".join(result.stdout.split())


# ----------------------------------------------------------------------------- 7. the README


def test_the_readme_tells_the_install_time_the_extras_the_chat_layout_and_offline_use():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert re.search(r"about \d+ min to install", readme), "times with the install"
    assert "PyPI" in readme and "pip install 'grpokit[" in readme, "where the extras install from"
    assert '"messages"' in readme and "docs/data.md" in readme, "the chat layout"
    assert "HF_HUB_OFFLINE" in readme and "local folder" in readme, "working offline"
