"""MLflow tracking against a real `mlflow server` on 127.0.0.1: the run, a resumed run, a server that dies, the SageMaker ARN path."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import warnings
from contextlib import contextmanager
from pathlib import Path

import pytest
from transformers import TrainerCallback

from grpokit.config import load_config
from grpokit.outputs.tracking.base import GuardedTracker, RunStart
from grpokit.outputs.tracking.mlflow_tracker import RUN_ID_FILE, MlflowTracker
from grpokit.trainer import train

mlflow = pytest.importorskip("mlflow")

SECRETS = {"wandb_token": "wandb-SECRET-4242", "token": "hf_SECRET_4343", "hub_token": "hub-SECRET-4444"}
SERVER_START_TIMEOUT_S = 180  # `mlflow server` imports for 20-30 s on a 2-core machine


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class MlflowServer:
    def __init__(self, url: str, process: subprocess.Popen, log_path: Path) -> None:
        self.url, self.process, self.log_path = url, process, log_path

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)  # the server and its uvicorn worker
            self.process.wait(timeout=30)


@contextmanager
def running_mlflow_server(root: Path):
    """Start `mlflow server` (sqlite store, proxied artifacts) on a free port; wait until healthy; kill it after."""
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log_path = root / "server.log"
    command = [
        str(Path(sys.executable).parent / "mlflow"), "server",
        "--host", "127.0.0.1", "--port", str(port),
        "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination", str(root / "artifacts"),
        "--workers", "1",
    ]  # fmt: skip
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    server = MlflowServer(f"http://127.0.0.1:{port}", process, log_path)
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                pytest.fail(
                    f"mlflow server exited with {process.returncode}:\n{log_path.read_text()[-3000:]}"
                )
            try:
                with urllib.request.urlopen(server.url + "/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"mlflow server not healthy after {SERVER_START_TIMEOUT_S} s:\n{log_path.read_text()[-3000:]}"
                )
            time.sleep(0.5)
        yield server
    finally:
        server.kill()


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    with running_mlflow_server(tmp_path_factory.mktemp("mlflow-server")) as server:
        yield server


@pytest.fixture
def reset_global_tracking_uri():
    yield
    mlflow.set_tracking_uri(None)


def tracked_config(tiny_config: dict, server_url: str, experiment: str, **extra) -> dict:
    return {
        **tiny_config,
        **SECRETS,
        "mlflow_uri": server_url,
        "mlflow_experiment_name": experiment,
        "wandb_mode": "offline",  # wandb_token alone turns W&B on (as in the AWS sample); keep it on this machine
        "log_completions_every": 1,
        "system_metrics_interval": 1.0,
        **extra,
    }


def only_run(client, experiment_name: str):
    experiment = client.get_experiment_by_name(experiment_name)
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1, [run.info.run_id for run in runs]
    return runs[0]


def download_all_artifacts(client, run_id: str, target: Path) -> list[Path]:
    client.download_artifacts(run_id, "", str(target))
    return sorted(path for path in target.rglob("*") if path.is_file())


def assert_no_secret(text: str, where: str) -> None:
    for key, secret in SECRETS.items():
        assert secret not in text, f"{key}'s value leaked into {where}"


@pytest.mark.slow
def test_mlflow_run_holds_params_metrics_tables_dataset_and_model_without_secrets(
    mlflow_server, tiny_config, tmp_path
):
    config = load_config(
        data=tracked_config(
            tiny_config,
            mlflow_server.url,
            "grpokit-e2e",
            mlflow_register_model="tiny-grpo",
            mlflow_run_name="e2e",
        )
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = train(config)
    assert result.global_step == 2
    schema = [str(w.message)[:80] for w in caught if "Inferred schema" in str(w.message)]
    assert schema == [], "MLflow's schema lecture is not the user's to act on"

    client = mlflow.MlflowClient(mlflow_server.url)
    run = only_run(client, "grpokit-e2e")
    run_id = run.info.run_id
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "e2e"

    # params: the resolved config, secrets masked; nothing secret in params or tags
    params = run.data.params
    assert params["model_id"] == "builtin:tiny"
    assert params["rewards.0.name"] == "rouge_l" and params["rewards.1.target_length"] == "3"
    assert params["max_steps"] == "2"
    assert params["wandb_token"] == params["token"] == params["hub_token"] == "***"
    assert_no_secret(json.dumps(params), "params")
    assert_no_secret(json.dumps(run.data.tags), "tags")

    # per-step metrics, one value per step for each reward
    for key in ("reward", "rewards/rouge_l/mean", "rewards/rouge_l/std", "rewards/length/mean", "rewards/length/std",
                "loss", "learning_rate", "completions/mean_length", "step_time"):  # fmt: skip
        steps = [metric.step for metric in client.get_metric_history(run_id, key)]
        assert steps == [1, 2], (key, steps)
    assert [m.step for m in client.get_metric_history(run_id, "tokens_per_second")] == [2]
    assert client.get_metric_history(run_id, "system/cpu_utilization_percent")
    assert client.get_metric_history(run_id, "system/memory_used_gb")[0].value > 0
    jsonl_rewards = [json.loads(line)["reward"] for line in result.metrics_path.read_text().splitlines()]
    assert [m.value for m in client.get_metric_history(run_id, "reward")] == pytest.approx(jsonl_rewards)

    # the training data as a dataset input, with a digest
    (dataset_input,) = run.inputs.dataset_inputs
    assert dataset_input.dataset.name == "train" and dataset_input.dataset.digest
    assert json.loads(dataset_input.dataset.profile)["num_rows"] == 32
    assert {tag.key: tag.value for tag in dataset_input.tags} == {"mlflow.data.context": "train"}

    # artifacts: config, a completions table per step, the model; no secret in any of them
    files = download_all_artifacts(client, run_id, tmp_path / "artifacts")
    names = {path.relative_to(tmp_path / "artifacts").as_posix() for path in files}
    assert {
        "completions/step_000001.json",
        "completions/step_000002.json",
        "config/grpokit_config.yaml",
    } <= names
    assert {"model/adapter_model.safetensors", "model/adapter_config.json", "model/tokenizer.json"} <= names
    assert not any(name.startswith("model/checkpoints") for name in names)
    table = json.loads((tmp_path / "artifacts" / "completions" / "step_000002.json").read_text())
    columns = table["columns"]
    assert {"step", "prompt", "completion", "rewards/rouge_l", "rewards/length", "advantage"} <= set(columns)
    rows = [dict(zip(columns, row)) for row in table["data"]]
    assert len(rows) == 4 and all(row["step"] == 2 and row["prompt"].endswith("=") for row in rows)
    for path in files:
        assert_no_secret(path.read_bytes().decode("utf-8", errors="replace"), f"artifact {path.name}")

    # the registered model version points at this run
    (version,) = client.search_model_versions("name='tiny-grpo'")
    assert version.run_id == run_id and version.source.endswith("/model")

    saved = json.loads((Path(tiny_config["output_dir"]) / "checkpoints" / RUN_ID_FILE).read_text())
    assert saved["run_id"] == run_id


@pytest.mark.slow
def test_resumed_training_continues_the_same_mlflow_run(mlflow_server, tiny_config):
    first = train(load_config(data=tracked_config(tiny_config, mlflow_server.url, "grpokit-resume")))
    assert first.global_step == 2
    second = train(
        load_config(data=tracked_config(tiny_config, mlflow_server.url, "grpokit-resume", max_steps=3))
    )
    assert second.resumed_from is not None and second.global_step == 3

    client = mlflow.MlflowClient(mlflow_server.url)
    run = only_run(client, "grpokit-resume")  # one run, not two
    assert run.info.status == "FINISHED"
    assert run.data.tags["grpokit.resumed_at_step"] == "2"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "rewards/length/mean")] == [1, 2, 3]
    artifacts = {item.path for item in client.list_artifacts(run.info.run_id, "config")}
    assert artifacts == {"config/grpokit_config.yaml", "config/grpokit_config_resumed_step_2.yaml"}


class KillServerAfterFirstStep(TrainerCallback):
    def __init__(self, server: MlflowServer) -> None:
        self.server = server

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == 1:
            self.server.kill()


@pytest.mark.slow
def test_training_survives_the_tracking_server_going_away(tiny_config, tmp_path, caplog):
    with running_mlflow_server(tmp_path / "doomed-server") as server:
        config = load_config(data=tracked_config(tiny_config, server.url, "grpokit-doomed", max_steps=3))
        with caplog.at_level(logging.INFO, logger="grpokit"):
            result = train(config, extra_callbacks=[KillServerAfterFirstStep(server)])

    assert result.global_step == 3
    assert (Path(tiny_config["output_dir"]) / "adapter_model.safetensors").is_file()
    tracking_warnings = [
        r.getMessage()
        for r in caplog.records
        if r.name == "grpokit.tracking" and r.levelno == logging.WARNING
    ]
    failures = [message for message in tracking_warnings if "tracking failed" in message]
    assert len(failures) == 1, tracking_warnings
    assert failures[0].startswith("mlflow tracking failed")
    lost = [message for message in tracking_warnings if "log call(s) lost" in message]
    assert lost and int(lost[-1].split("mlflow: ")[1].split()[0]) > 0


@pytest.mark.slow
def test_unreachable_server_at_start_is_one_warning_and_counted(tmp_path, caplog):
    tracker = GuardedTracker(
        MlflowTracker(tracking_uri=f"http://127.0.0.1:{free_port()}", experiment_name="nowhere"),
        retry_after_s=60,
    )
    run = RunStart(
        run_name="r", state_dir=tmp_path / "ck", output_dir=tmp_path, resumed_step=0, config={"a": 1}
    )
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="grpokit.tracking"):
        tracker.start(run)
        for step in range(1, 6):
            tracker.log_metrics({"reward": 0.5}, step=step)
        tracker.finish(success=True)
    assert time.monotonic() - started < 30
    assert [r.getMessage().split(" (")[0] for r in caplog.records] == ["mlflow tracking failed in start"]
    assert tracker.lost_calls_report() == [
        "mlflow: 7 log call(s) lost (tracking server unreachable or failing)"
    ]
    assert not (tmp_path / "ck" / RUN_ID_FILE).exists()


@pytest.mark.slow
def test_sagemaker_arn_goes_through_the_plugin_to_the_local_server(
    mlflow_server, tmp_path, monkeypatch, reset_global_tracking_uri
):
    pytest.importorskip("sagemaker_mlflow")
    arn = "arn:aws:sagemaker:us-east-1:123456789012:mlflow-tracking-server/grpokit-test"
    monkeypatch.setenv("SAGEMAKER_MLFLOW_CUSTOM_ENDPOINT", mlflow_server.url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    client = mlflow.MlflowClient(mlflow_server.url)  # direct, not through the plugin
    # A managed server keeps artifacts in S3, which the client writes itself; a local folder plays S3 here
    # (the test server's default `mlflow-artifacts:` proxy only works with an http tracking URI).
    client.create_experiment("grpokit-arn", artifact_location=(tmp_path / "s3-stand-in").as_uri())
    tracker = GuardedTracker(
        MlflowTracker(tracking_uri=arn, experiment_name="grpokit-arn", run_name="via-arn")
    )
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "config.json").write_text("{}")

    tracker.start(
        RunStart(
            run_name="x", state_dir=tmp_path / "ck", output_dir=tmp_path, resumed_step=0, config={"lora_r": 8}
        )
    )
    tracker.log_metrics({"reward": 0.25}, step=1)
    tracker.log_table(
        "completions", [{"step": 1, "prompt": "1+1=", "completion": "2", "rewards/exact": 1.0}], step=1
    )
    tracker.finish(success=True)
    tracker.log_model(model_dir, registered_name=None)
    assert tracker.lost_calls_report() == []

    saved = json.loads((tmp_path / "ck" / RUN_ID_FILE).read_text())
    assert saved["tracking_uri"] == arn
    run = client.get_run(saved["run_id"])
    assert run.info.run_name == "via-arn" and run.info.status == "FINISHED"
    assert run.data.params == {"lora_r": "8"}
    assert run.data.metrics == {"reward": 0.25}
    assert {item.path for item in client.list_artifacts(run.info.run_id)} >= {"completions", "model"}


@pytest.mark.slow
@pytest.mark.parametrize("store", ["sqlite", "file", "path"])
def test_local_stores_need_no_server(store, tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    monkeypatch.chdir(tmp_path)
    uri = {
        "sqlite": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "file": (tmp_path / "mlruns").as_uri(),
        "path": "mlruns",
    }[store]
    tracker = GuardedTracker(MlflowTracker(tracking_uri=uri, experiment_name="local"))
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "adapter_config.json").write_text("{}")
    (model_dir / "checkpoints").mkdir()  # folders beside the model are not the model
    (model_dir / "checkpoints" / "big.bin").write_text("x")

    tracker.start(run_start_for(tmp_path))
    tracker.log_metrics({"reward": 0.5, "rewards/exact/mean": 0.5}, step=1)
    tracker.log_table("completions", [{"step": 1, "prompt": "p", "completion": "c"}], step=1)
    tracker.finish(success=True)
    tracker.log_model(model_dir, registered_name="local-model")
    assert tracker.lost_calls_report() == []

    client = mlflow.MlflowClient(uri)
    run = only_run(client, "local")
    assert run.data.metrics == {"reward": 0.5, "rewards/exact/mean": 0.5}
    assert [item.path for item in client.list_artifacts(run.info.run_id, "model")] == [
        "model/adapter_config.json"
    ]
    (version,) = client.search_model_versions("name='local-model'")
    assert version.run_id == run.info.run_id


def run_start_for(tmp_path: Path) -> RunStart:
    return RunStart(
        run_name="local-run",
        state_dir=tmp_path / "ck",
        output_dir=tmp_path,
        resumed_step=0,
        config={"lora_r": 8},
    )
