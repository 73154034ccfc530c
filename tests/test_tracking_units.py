"""Tracking pieces without a server or a training: the factory, the guard, the callback, names, params, system metrics."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import pytest

from grpokit.config import load_config
from grpokit.outputs.metrics import StepTimeCallback
from grpokit.outputs.tracking import (
    CompositeTracker,
    GuardedTracker,
    NullTracker,
    TrackingCallback,
    build_trackers,
    default_run_name,
)
from grpokit.outputs.tracking.base import RunStart, is_connection_error
from grpokit.outputs.tracking.callback import message_text, numeric_metrics, trl_recent_completions
from grpokit.outputs.tracking.mlflow_tracker import flatten_params, is_file_store, is_sagemaker_arn
from grpokit.outputs.tracking.system_metrics import GpuReader, SystemMetricsSampler, visible_gpu_indices
from grpokit.outputs.tracking.wandb_tracker import command_line_has_secret


class RecordingTracker:
    name = "recording"

    def __init__(self, fail_with: Exception | None = None) -> None:
        self.calls: list[tuple] = []
        self.fail_with = fail_with

    def _record(self, *call):
        self.calls.append(call)
        if self.fail_with is not None and call[0] != "start":
            raise self.fail_with

    def start(self, run):
        self._record("start", run)

    def log_metrics(self, metrics, step, timestamp=None):
        self._record("log_metrics", dict(metrics), step)

    def log_table(self, key, rows, step):
        self._record("log_table", key, rows, step)

    def log_dataset(self, dataset, *, name, source):
        self._record("log_dataset", name, source)

    def finish(self, *, success):
        self._record("finish", success)

    def log_model(self, model_dir, *, registered_name):
        self._record("log_model", model_dir, registered_name)

    def lost_calls_report(self):
        return []


def run_start(tmp_path: Path, step: int = 0) -> RunStart:
    return RunStart(
        run_name="r", state_dir=tmp_path / "ck", output_dir=tmp_path, resumed_step=step, config={}
    )


# ----------------------------------------------------------------------------- factory


@pytest.fixture
def base_config(tiny_config):
    return tiny_config


@pytest.mark.parametrize(
    ("extra", "is_main", "expected"),
    [
        ({}, True, NullTracker),
        ({"mlflow_uri": "sqlite:///x.db", "mlflow_experiment_name": "e"}, False, NullTracker),
        ({"mlflow_uri": "sqlite:///x.db"}, True, NullTracker),  # experiment missing: off, with a warning
        ({"mlflow_uri": "sqlite:///x.db", "mlflow_experiment_name": "e"}, True, GuardedTracker),
        ({"wandb_project": "p", "wandb_mode": "offline"}, True, GuardedTracker),
        (
            {"wandb_project": "p", "mlflow_uri": "sqlite:///x.db", "mlflow_experiment_name": "e"},
            True,
            CompositeTracker,
        ),
    ],
)
def test_build_trackers_picks_what_the_config_switches_on(
    base_config, tmp_path, monkeypatch, extra, is_main, expected
):
    monkeypatch.chdir(tmp_path)
    tracker = build_trackers(load_config(data={**base_config, **extra}), is_main_process=is_main)
    assert type(tracker) is expected
    if isinstance(tracker, CompositeTracker):
        assert [t.name for t in tracker.trackers] == ["mlflow", "wandb"]


def test_mlflow_half_configured_says_so(base_config, caplog):
    with caplog.at_level(logging.WARNING, logger="grpokit.tracking"):
        build_trackers(load_config(data={**base_config, "mlflow_uri": "http://x"}), is_main_process=True)
    assert "set both mlflow_uri and mlflow_experiment_name" in caplog.text


def test_wandb_key_comes_from_env_before_config(base_config, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "from-env")
    tracker = build_trackers(
        load_config(data={**base_config, "wandb_project": "p", "wandb_token": "from-config"}),
        is_main_process=True,
    )
    assert tracker.tracker.api_key == "from-env"
    monkeypatch.delenv("WANDB_API_KEY")
    tracker = build_trackers(
        load_config(data={**base_config, "wandb_project": "p", "wandb_token": "from-config"}),
        is_main_process=True,
    )
    assert tracker.tracker.api_key == "from-config"


def test_null_tracker_accepts_everything(tmp_path):
    tracker = NullTracker()
    tracker.start(run_start(tmp_path))
    tracker.log_metrics({"a": 1.0}, step=1)
    tracker.log_table("t", [{"a": 1}], step=1)
    tracker.finish(success=True)
    assert tracker.lost_calls_report() == []


# ----------------------------------------------------------------------------- guard


def test_guard_warns_once_counts_every_lost_call_and_keeps_logging_after_a_plain_error(tmp_path, caplog):
    inner = RecordingTracker(fail_with=ValueError("bad metric name"))
    guard = GuardedTracker(inner, retry_after_s=60)
    with caplog.at_level(logging.WARNING, logger="grpokit.tracking"):
        guard.start(run_start(tmp_path))
        for step in range(3):
            guard.log_metrics({"x": 1.0}, step=step)
    assert len(caplog.records) == 1 and "recording tracking failed in log_metrics" in caplog.text
    assert len(inner.calls) == 4  # a plain error does not pause the tracker: every call was tried
    assert guard.lost_calls_report() == [
        "recording: 3 log call(s) lost (tracking server unreachable or failing)"
    ]


def test_guard_pauses_after_a_connection_error_and_tries_again_to_finish(tmp_path):
    inner = RecordingTracker(fail_with=ConnectionError("Connection refused"))
    guard = GuardedTracker(inner, retry_after_s=60)
    guard.start(run_start(tmp_path))
    for step in range(5):
        guard.log_metrics({"x": 1.0}, step=step)
    guard.finish(success=True)
    assert [call[0] for call in inner.calls] == ["start", "log_metrics", "finish"]
    assert guard.lost_calls == 6


def test_guard_drops_everything_when_the_run_never_started(tmp_path):
    inner = RecordingTracker()
    inner.start = lambda run: (_ for _ in ()).throw(OSError("Max retries exceeded"))
    guard = GuardedTracker(inner)
    guard.start(run_start(tmp_path))
    guard.log_metrics({"x": 1.0}, step=1)
    guard.finish(success=True)
    assert inner.calls == [] and guard.lost_calls == 3


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (ConnectionRefusedError(), True),
        (TimeoutError(), True),
        (
            RuntimeError(
                "API request to http://h/api failed with exception HTTPConnectionPool: Max retries exceeded"
            ),
            True,
        ),
        (ValueError("Invalid metric name: 'a//b'"), False),
    ],
)
def test_is_connection_error(error, expected):
    assert is_connection_error(error) is expected


# ----------------------------------------------------------------------------- callback


def fake_args(tmp_path: Path):
    return SimpleNamespace(output_dir=str(tmp_path / "checkpoints"))


def fake_state(step: int, main: bool = True):
    return SimpleNamespace(global_step=step, is_world_process_zero=main)


def test_callback_forwards_numeric_logs_throughput_and_tables(tmp_path):
    tracker = RecordingTracker()
    rows = [{"prompt": "1+1=", "completion": "2", "rewards/exact": 1.0}]
    callback = TrackingCallback(
        tracker,
        run_name="r",
        config={"a": 1},
        output_dir=tmp_path,
        completions=lambda: rows,
        completions_every=2,
    )
    timer = StepTimeCallback()  # before it in every run (RunCallbacks): the log's step_time is the run's one clock
    args = fake_args(tmp_path)
    for each in (timer, callback):
        each.on_train_begin(args, fake_state(0), None)
    for step, logs in ((1, {"reward": 0.5, "num_tokens": 100.0, "kl": None, "note": "text"}), (2, {"reward": 0.75, "num_tokens": 180.0})):
        for each in (timer, callback):
            each.on_log(args, fake_state(step), None, logs=logs)
    callback.on_train_end(args, fake_state(2), None)

    kinds = [call[0] for call in tracker.calls]
    assert kinds == ["start", "log_metrics", "log_metrics", "log_table", "finish"]
    start = tracker.calls[0][1]
    assert start.state_dir == tmp_path / "checkpoints" and not start.resuming
    first, second = tracker.calls[1], tracker.calls[2]
    assert set(first[1]) == {"reward", "num_tokens", "step_time"} and first[2] == 1  # None and text dropped
    assert {"reward", "num_tokens", "step_time", "tokens_per_second"} == set(second[1])
    assert second[1]["tokens_per_second"] > 0
    assert tracker.calls[3] == (
        "log_table",
        "completions",
        [{"step": 2, **rows[0]}],
        2,
    )  # once, not again at the end
    assert tracker.calls[4] == ("finish", True)


def test_callback_reports_resume_and_does_nothing_on_other_ranks(tmp_path):
    tracker = RecordingTracker()
    callback = TrackingCallback(tracker, run_name="r", config={}, output_dir=tmp_path)
    callback.on_train_begin(fake_args(tmp_path), fake_state(5, main=False), None)
    callback.on_log(fake_args(tmp_path), fake_state(6, main=False), None, logs={"reward": 1.0})
    assert tracker.calls == []
    callback.on_train_begin(fake_args(tmp_path), fake_state(5), None)
    assert tracker.calls[0][1].resumed_step == 5 and tracker.calls[0][1].resuming


def test_callback_sends_system_samples_from_the_training_thread(tmp_path):
    tracker = RecordingTracker()
    callback = TrackingCallback(
        tracker, run_name="r", config={}, output_dir=tmp_path, system_metrics_interval=0.05
    )
    callback.on_train_begin(fake_args(tmp_path), fake_state(0), None)
    import time

    time.sleep(0.3)
    callback.on_step_end(fake_args(tmp_path), fake_state(1), None)
    callback.on_train_end(fake_args(tmp_path), fake_state(1), None)
    system = [call for call in tracker.calls if call[0] == "log_metrics"]
    assert len(system) >= 2
    assert all("system/cpu_utilization_percent" in call[1] and call[2] == 1 for call in system)


def test_trl_recent_completions_reads_the_trainers_last_generation_batch():
    from collections import defaultdict, deque

    logs = {
        "prompt": deque(["1+1=", [{"role": "user", "content": "2+2="}]]),
        "completion": deque(["2", [{"role": "assistant", "content": "4"}]]),
        "rewards": defaultdict(deque, {"exact": deque([1.0, float("nan")])}),
        "advantages": deque([0.5, -0.5]),
    }
    rows = trl_recent_completions(SimpleNamespace(_logs=logs))
    assert rows == [
        {"prompt": "1+1=", "completion": "2", "rewards/exact": 1.0, "advantage": 0.5},
        {"prompt": "user: 2+2=", "completion": "assistant: 4", "rewards/exact": None, "advantage": -0.5},
    ]
    assert trl_recent_completions(SimpleNamespace()) == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", ""),
        ("naïve ✓", "naïve ✓"),
        ([{"role": "user", "content": "hi"}], "user: hi"),
        (
            [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "a"},
                        {"type": "image"},
                        {"type": "text", "text": "b"},
                    ],
                }
            ],
            "user: ab",
        ),
        ([{"role": "system", "content": "s"}, {"role": "user", "content": "u"}], "system: s\nuser: u"),
    ],
)
def test_message_text(value, expected):
    assert message_text(value) == expected


def test_numeric_metrics_keeps_finite_numbers_only():
    assert numeric_metrics(
        {"a": 1, "b": 2.5, "c": None, "d": float("nan"), "e": float("inf"), "f": "x", "g": True}
    ) == {
        "a": 1.0,
        "b": 2.5,
    }


# ----------------------------------------------------------------------------- names and params


def test_default_run_name_uses_the_last_part_of_the_model_id():
    assert default_run_name("builtin:tiny").startswith("tiny-")
    assert default_run_name("Qwen/Qwen2.5-0.5B").startswith("Qwen2.5-0.5B-")
    assert default_run_name("/models/llama/").startswith("llama-")


def test_flatten_params():
    config = {
        "lora_r": 8,
        "dataset": {"prompt_column": "q", "max_samples": None},
        "rewards": [{"name": "rouge_l", "weight": 1.0}],
        "lora_target_modules": ["q_proj", "v_proj"],
        "long": "x" * 7000,
    }
    flat = flatten_params(config)
    assert flat["lora_r"] == "8"
    assert flat["dataset.prompt_column"] == "q" and flat["dataset.max_samples"] == "null"
    assert flat["rewards.0.name"] == "rouge_l" and flat["rewards.0.weight"] == "1.0"
    assert flat["lora_target_modules"] == '["q_proj", "v_proj"]'
    assert len(flat["long"]) == 6000


@pytest.mark.parametrize(
    ("uri", "arn", "file_store"),
    [
        ("arn:aws:sagemaker:us-east-1:123456789012:mlflow-tracking-server/x", True, False),
        ("http://127.0.0.1:5000", False, False),
        ("sqlite:///mlflow.db", False, False),
        ("file:///tmp/mlruns", False, True),
        ("./mlruns", False, True),
    ],
)
def test_tracking_uri_kinds(uri, arn, file_store):
    assert is_sagemaker_arn(uri) is arn
    assert is_file_store(uri) is file_store


def test_command_line_has_secret():
    assert command_line_has_secret(["train", "c.yaml", "--set", "wandb_token=abc"])
    assert command_line_has_secret(["--set=hub_token=abc"])
    assert not command_line_has_secret(["train", "c.yaml", "--set", "learning_rate=1e-5"])


# ----------------------------------------------------------------------------- system metrics


@pytest.mark.parametrize(
    ("count", "visible", "expected"),
    [
        (8, None, list(range(8))),
        (8, "2,3", [2, 3]),
        (2, "0,5", [0]),
        (4, "GPU-1234abcd", [0, 1, 2, 3]),
        (0, None, []),
    ],
)
def test_visible_gpu_indices(count, visible, expected):
    assert visible_gpu_indices(count, visible) == expected


def test_without_a_gpu_only_cpu_and_memory_are_sampled_and_it_is_said_once(caplog):
    reader = GpuReader.__new__(GpuReader)
    reader.available, reader.reason, reader._handles = False, "NVMLError_LibraryNotFound", []
    with caplog.at_level(logging.INFO, logger="grpokit.tracking"):
        sampler = SystemMetricsSampler(0.05, gpu_reader=reader)
        sample = sampler.sample()
        sampler.sample()
    assert [r.getMessage() for r in caplog.records if "no GPU" in r.getMessage()] == [
        "system metrics: no GPU found (NVMLError_LibraryNotFound); sampling CPU and RAM only"
    ]
    assert set(sample.values) == {
        "system/cpu_utilization_percent",
        "system/memory_used_gb",
        "system/memory_total_gb",
        "system/memory_percent",
        "system/process_rss_gb",
    }


def test_gpu_reader_logs_one_key_set_per_real_device(monkeypatch):
    pynvml = pytest.importorskip("pynvml")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,2")
    fakes = {
        "nvmlInit": lambda: None,
        "nvmlDeviceGetCount": lambda: 4,
        "nvmlDeviceGetHandleByIndex": lambda index: index,
        "nvmlDeviceGetUtilizationRates": lambda handle: SimpleNamespace(gpu=10 * handle),
        "nvmlDeviceGetMemoryInfo": lambda handle: SimpleNamespace(used=handle * 1024**3, total=80 * 1024**3),
        "nvmlDeviceGetTemperature": lambda handle, sensor: 40 + handle,
    }
    for name, fake in fakes.items():
        monkeypatch.setattr(pynvml, name, fake)

    def power_not_supported(handle):
        raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)

    monkeypatch.setattr(pynvml, "nvmlDeviceGetPowerUsage", power_not_supported)
    reader = GpuReader()
    assert reader.available
    values = reader.read()
    assert values == {
        "system/gpu1/utilization_percent": 10.0,
        "system/gpu1/memory_used_gb": 1.0,
        "system/gpu1/memory_total_gb": 80.0,
        "system/gpu1/temperature_c": 41.0,
        "system/gpu2/utilization_percent": 20.0,
        "system/gpu2/memory_used_gb": 2.0,
        "system/gpu2/memory_total_gb": 80.0,
        "system/gpu2/temperature_c": 42.0,
    }
