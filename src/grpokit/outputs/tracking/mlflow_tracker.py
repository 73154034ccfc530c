"""MLflow: one run per training, continued on resume; params, metrics, dataset, tables, model.

The tracking URI may be http(s)://, a local path, `file:`, `sqlite:`, or a SageMaker managed MLflow
ARN (`arn:aws:sagemaker:<region>:<account>:mlflow-tracking-server/<name>`, through the
`sagemaker-mlflow` plugin, which MLflow finds by itself once installed).

grpokit talks to MLflow through `MlflowClient` with an explicit run id, never the fluent
`mlflow.start_run()` globals, so nothing leaks between runs in one process.
"""

from __future__ import annotations

import atexit
import json
import logging
import math
import os
import time
import warnings
from pathlib import Path
from typing import Any

import yaml

from grpokit.compat.tracking_internals import mlflow_dataset_entity
from grpokit.outputs.files import MLFLOW_RUN_FILE, RUN_LOCK_FILE, TEMPORARY_SUFFIX, atomic_write_text
from grpokit.outputs.tracking.base import RunStart

logger = logging.getLogger("grpokit.tracking")

RUN_ID_FILE = MLFLOW_RUN_FILE
# MLflow's own limits (mlflow.utils.validation): params per batch call, metrics per batch call, value length.
MAX_PARAMS_PER_BATCH = 100
MAX_METRICS_PER_BATCH = 1000
MAX_PARAM_VALUE_LENGTH = 6000
MAX_PARAM_KEY_LENGTH = 250
# MLflow retries an unreachable server 7 times with doubling waits (minutes per call). A training run
# cannot wait that long for a log call: fail fast, and the guard drops calls until the server is back.
# Environment variables of the same name, when set, win.
FAST_FAIL_HTTP_SETTINGS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}


def is_sagemaker_arn(uri: str) -> bool:
    return uri.startswith("arn:aws:sagemaker:")


def is_file_store(uri: str) -> bool:
    """A local directory store: `file:...` or a plain path (MLflow reads both as its file store)."""
    return (
        uri.startswith("file:") or "://" not in uri and not uri.startswith(("arn:", "sqlite:", "databricks"))
    )


class _SageMakerHeaderWarningFilter(logging.Filter):
    """Drops the warning sagemaker-mlflow causes on every request to a non-ARN server.

    Its request-header plugin is active for every URI and fails to parse a non-ARN global tracking
    URI ("list index out of range"); MLflow logs that once per request. Nothing is wrong with the request.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not ("resolving request headers" in message and "list index out of range" in message)


class _MlflowRetryWarningFilter(logging.Filter):
    """Drops urllib3's "Retrying ..." line for MLflow API calls: the guard reports a failed call once, in one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (message.startswith("Retrying") and "/api/2.0/mlflow" in message)


def _add_filter_once(logger_name: str, filter_class: type[logging.Filter]) -> None:
    target = logging.getLogger(logger_name)
    if not any(isinstance(existing, filter_class) for existing in target.filters):
        target.addFilter(filter_class())


def flatten_params(config: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """`{"dataset": {"prompt_column": "q"}, "rewards": [{"name": "x"}]}` -> `{"dataset.prompt_column": "q", "rewards.0.name": "x"}`.

    Lists of plain values stay one param (JSON); values are cut to MLflow's length limit.
    """
    flat: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_params(value, name + "."))
        elif isinstance(value, list) and any(isinstance(item, dict) for item in value):
            flat.update(flatten_params({str(i): item for i, item in enumerate(value)}, name + "."))
        else:
            text = value if isinstance(value, str) else json.dumps(value, default=str)
            flat[name[:MAX_PARAM_KEY_LENGTH]] = text[:MAX_PARAM_VALUE_LENGTH]
    return flat


class MlflowTracker:
    """Logs one training to one MLflow run. Every method may raise; `GuardedTracker` catches."""

    name = "mlflow"

    def __init__(self, *, tracking_uri: str, experiment_name: str, run_name: str | None = None) -> None:
        from mlflow import MlflowClient

        for variable, value in FAST_FAIL_HTTP_SETTINGS.items():
            os.environ.setdefault(variable, value)
        if is_file_store(tracking_uri):
            # MLflow 3 refuses file stores unless asked; a config naming one is asking.
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        if is_sagemaker_arn(tracking_uri):
            # The sagemaker-mlflow plugin adds its routing header from the *global* tracking URI.
            import mlflow

            mlflow.set_tracking_uri(tracking_uri)
        else:
            _add_filter_once("mlflow.tracking.request_header.registry", _SageMakerHeaderWarningFilter)
        _add_filter_once("urllib3.connectionpool", _MlflowRetryWarningFilter)
        self.tracking_uri = tracking_uri
        self.experiment_name = experiment_name
        self.run_name_override = run_name
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        self.run_id: str | None = None
        self._finished = False

    # ------------------------------------------------------------------ run lifecycle

    def start(self, run: RunStart) -> None:
        experiment_id = self._experiment_id()
        self.run_id = self._previous_run_id(run) if run.resuming else None
        if self.run_id is not None:
            self.client.update_run(self.run_id, status="RUNNING")
            self.client.set_tag(self.run_id, "grpokit.resumed_at_step", str(run.resumed_step))
            logger.info("mlflow: resuming run %s at step %d", self.run_id, run.resumed_step)
        else:
            tags = {"mlflow.source.type": "JOB", **run.tags}
            created = self.client.create_run(
                experiment_id, tags=tags, run_name=self.run_name_override or run.run_name
            )
            self.run_id = created.info.run_id
            self._log_params(flatten_params(run.config))
        config_name = (
            f"config/grpokit_config_resumed_step_{run.resumed_step}.yaml"
            if run.resuming
            else "config/grpokit_config.yaml"
        )
        self.client.log_text(
            self.run_id, yaml.safe_dump(run.config, sort_keys=False, allow_unicode=True), config_name
        )
        self._save_run_id(run.state_dir, experiment_id)
        atexit.register(self._end_if_still_running)
        logger.info("mlflow: logging to run %s at %s", self.run_id, self.tracking_uri)

    def _experiment_id(self) -> str:
        experiment = self.client.get_experiment_by_name(self.experiment_name)
        if experiment is None:
            return self.client.create_experiment(self.experiment_name)
        if experiment.lifecycle_stage == "deleted":
            self.client.restore_experiment(experiment.experiment_id)
        return experiment.experiment_id

    def _previous_run_id(self, run: RunStart) -> str | None:
        path = run.state_dir / RUN_ID_FILE
        if not path.is_file():
            return None
        saved = json.loads(path.read_text(encoding="utf-8"))
        if (
            saved.get("tracking_uri") != self.tracking_uri
            or saved.get("experiment_name") != self.experiment_name
        ):
            return None
        from mlflow.exceptions import MlflowException

        try:
            previous = self.client.get_run(saved["run_id"])
        except MlflowException:  # the saved run was deleted: start a new one
            logger.warning(
                "mlflow: run %s from %s no longer exists; starting a new run", saved["run_id"], path
            )
            return None
        return previous.info.run_id if previous.info.lifecycle_stage == "active" else None

    def _save_run_id(self, state_dir: Path, experiment_id: str) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        record = {
            "run_id": self.run_id,
            "experiment_id": experiment_id,
            "experiment_name": self.experiment_name,
            "tracking_uri": self.tracking_uri,
        }
        atomic_write_text(state_dir / RUN_ID_FILE, json.dumps(record, indent=2))

    def finish(self, *, success: bool, stopped_by_signal: int | None = None) -> None:
        """End the run: FINISHED, FAILED, or KILLED when a signal (SIGTERM, Ctrl-C) stopped the training."""
        self._finished = True  # tried once here; the exit hook is only for runs that never got this far
        if stopped_by_signal is not None:
            self.client.set_tag(self.run_id, "grpokit.stopped_by_signal", str(stopped_by_signal))
            status = "KILLED"
        else:
            status = "FINISHED" if success else "FAILED"
        self.client.set_terminated(self.run_id, status=status)

    def _end_if_still_running(self) -> None:
        """At interpreter exit, a run that never reached `finish` ended in a crash: mark it FAILED."""
        if self._finished or self.run_id is None:
            return
        try:
            self.client.set_terminated(self.run_id, status="FAILED")
        except Exception as error:  # noqa: BLE001 - exiting anyway; say it and go
            logger.warning("mlflow: could not mark run %s FAILED at exit: %s", self.run_id, error)

    # ------------------------------------------------------------------ logging

    def _log_params(self, params: dict[str, str]) -> None:
        from mlflow.entities import Param

        items = [Param(key, value) for key, value in params.items()]
        for start in range(0, len(items), MAX_PARAMS_PER_BATCH):
            self.client.log_batch(self.run_id, params=items[start : start + MAX_PARAMS_PER_BATCH])

    def log_metrics(self, metrics: dict[str, float], step: int, timestamp: float | None = None) -> None:
        from mlflow.entities import Metric

        millis = int((timestamp if timestamp is not None else time.time()) * 1000)
        items = [
            Metric(key, float(value), millis, step) for key, value in metrics.items() if math.isfinite(value)
        ]
        for start in range(0, len(items), MAX_METRICS_PER_BATCH):
            self.client.log_batch(self.run_id, metrics=items[start : start + MAX_METRICS_PER_BATCH])

    def log_table(self, key: str, rows: list[dict[str, Any]], step: int) -> None:
        columns = list(dict.fromkeys(column for row in rows for column in row))
        data = {column: [row.get(column) for row in rows] for column in columns}
        self.client.log_table(self.run_id, data=data, artifact_file=f"{key}/step_{step:06d}.json")

    def log_dataset(self, dataset: Any, *, name: str, source: str) -> None:
        """Record the training data as the run's input, with MLflow's digest of its first rows."""
        from mlflow.data.huggingface_dataset import from_huggingface
        from mlflow.entities import DatasetInput, InputTag

        # MLflow's schema inference lectures about integer columns on every run; the schema is inferred
        # when the entity is built, not when the dataset is wrapped, so both stay inside
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer column", category=UserWarning)
            mlflow_dataset = from_huggingface(dataset, name=name, source=_dataset_source(source))
            entity = DatasetInput(
                dataset=mlflow_dataset_entity(mlflow_dataset),
                tags=[InputTag(key="mlflow.data.context", value="train")],
            )
        self.client.log_inputs(self.run_id, datasets=[entity])

    def log_model(self, model_dir: Path, *, registered_name: str | None) -> None:
        """Upload the saved model as the run's `model/` artifacts; register a version if asked.

        Only the files at the top of `model_dir` are the model (weights, configs, tokenizer, plus
        metrics.jsonl and the resolved config); its folders are checkpoints, W&B and TensorBoard files.
        """
        for path in sorted(model_dir.iterdir()):
            if path.is_file() and not path.name.endswith(TEMPORARY_SUFFIX) and path.name != RUN_LOCK_FILE:
                self.client.log_artifact(self.run_id, str(path), artifact_path="model")
        if registered_name:
            self._register(registered_name)

    def _register(self, registered_name: str) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self.client.create_registered_model(registered_name)
        except MlflowException as error:
            if error.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        source = f"{self.client.get_run(self.run_id).info.artifact_uri}/model"
        version = self.client.create_model_version(registered_name, source=source, run_id=self.run_id)
        logger.info("mlflow: registered %s version %s", registered_name, version.version)


def _dataset_source(path: str):
    """Where the training data came from (the default would claim the Hugging Face Hub)."""
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.http_dataset_source import HTTPDatasetSource

    if path.startswith(("http://", "https://")):
        return HTTPDatasetSource(url=path)
    with warnings.catch_warnings():  # a path matches several equivalent artifact source types; any will do
        warnings.simplefilter("ignore")
        return resolve_dataset_source(path if "://" in path else str(Path(path).resolve()))
