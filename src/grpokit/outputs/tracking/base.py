"""What every tracker offers, the do-nothing stand-in, and the guard that keeps tracking from killing a run.

A tracker sees one training as: `start` -> many `log_metrics` / `log_table` -> `finish` -> optionally
`log_model` (the model is saved after the trainer's last callback has run).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

logger = logging.getLogger("grpokit.tracking")


@dataclass
class RunStart:
    """Everything a tracker needs to open (or reopen) its run.

    `state_dir` survives a restart (the checkpoint directory): trackers keep their run id there so a
    resumed training continues the same run. `resumed_step` is 0 for a fresh training.
    """

    run_name: str
    state_dir: Path
    output_dir: Path
    resumed_step: int
    config: dict[str, Any]  # the resolved config, secrets masked
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def resuming(self) -> bool:
        return self.resumed_step > 0


class TrackerBackend(Protocol):
    """One experiment tracker's client (MLflow, W&B). Its methods may raise; `GuardedTracker` catches.

    Metric keys are the trainer's log keys (`reward`, `rewards/<name>/mean`, ...).
    """

    name: str

    def start(self, run: RunStart) -> None: ...

    def log_metrics(self, metrics: dict[str, float], step: int, timestamp: float | None = None) -> None: ...

    def log_table(self, key: str, rows: list[dict[str, Any]], step: int) -> None: ...

    def log_dataset(self, dataset: Any, *, name: str, source: str) -> None: ...

    def finish(self, *, success: bool, stopped_by_signal: int | None = None) -> None: ...

    def log_model(self, model_dir: Path, *, registered_name: str | None) -> None: ...


class Tracker(TrackerBackend, Protocol):
    """What the trainer callback drives: a backend's calls that never raise, plus a report of lost calls."""

    def lost_calls_report(self) -> list[str]: ...


class NullTracker:
    """Accepts every call and does nothing: tracking switched off, tests, and processes other than rank 0."""

    name = "none"
    trackers: tuple = ()

    def start(self, run: RunStart) -> None:
        pass

    def log_metrics(self, metrics: dict[str, float], step: int, timestamp: float | None = None) -> None:
        pass

    def log_table(self, key: str, rows: list[dict[str, Any]], step: int) -> None:
        pass

    def log_dataset(self, dataset: Any, *, name: str, source: str) -> None:
        pass

    def finish(self, *, success: bool, stopped_by_signal: int | None = None) -> None:
        pass

    def log_model(self, model_dir: Path, *, registered_name: str | None) -> None:
        pass

    def lost_calls_report(self) -> list[str]:
        return []


CONNECTION_ERROR_WORDS = (
    "max retries exceeded",
    "connection refused",
    "connection aborted",
    "timed out",
    "failed to establish",
)


def is_connection_error(error: BaseException) -> bool:
    """True when `error` (or what caused it) says the server could not be reached, rather than that a call was wrong.

    MLflow wraps the `requests` error in an `MlflowException` whose message holds the original text.
    """
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, (ConnectionError, TimeoutError)) or type(seen).__name__ in (
            "ConnectionError",
            "Timeout",
        ):
            return True
        if any(word in str(seen).lower() for word in CONNECTION_ERROR_WORDS):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class GuardedTracker:
    """Wraps one tracker so that no tracking failure reaches the training loop.

    The first failure prints one warning line; every failed or dropped call is counted. After a
    connection failure, calls are dropped for `retry_after_s` seconds, then one is tried again, so a
    server that went away costs one short timeout per interval instead of one per log call. If `start` fails, the run never existed:
    every later call is dropped. `lost_calls_report()` says how many calls were lost.
    """

    def __init__(self, tracker: TrackerBackend, *, retry_after_s: float = 60.0) -> None:
        self.tracker = tracker
        self.name = tracker.name
        self.retry_after_s = retry_after_s
        self.lost_calls = 0
        self._started = False
        self._warned = False
        self._paused_until = 0.0

    def _call(self, method: str, *args: Any, **kwargs: Any) -> None:
        if method != "start" and not self._started:
            self.lost_calls += 1
            return
        if time.monotonic() < self._paused_until:
            self.lost_calls += 1
            return
        try:
            getattr(self.tracker, method)(*args, **kwargs)
        except Exception as error:  # noqa: BLE001 - any tracker failure is counted and reported, never raised
            self.lost_calls += 1
            if is_connection_error(error):
                self._paused_until = time.monotonic() + self.retry_after_s
            if not self._warned:
                self._warned = True
                first_line = (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
                logger.warning(
                    "%s tracking failed in %s (%s: %s); training continues, lost log calls are counted",
                    self.name,
                    method,
                    type(error).__name__,
                    first_line,
                )
            return
        if method == "start":
            self._started = True

    def start(self, run: RunStart) -> None:
        self._call("start", run)

    def log_metrics(self, metrics: dict[str, float], step: int, timestamp: float | None = None) -> None:
        self._call("log_metrics", metrics, step, timestamp)

    def log_table(self, key: str, rows: list[dict[str, Any]], step: int) -> None:
        self._call("log_table", key, rows, step)

    def log_dataset(self, dataset: Any, *, name: str, source: str) -> None:
        self._call("log_dataset", dataset, name=name, source=source)

    def finish(self, *, success: bool, stopped_by_signal: int | None = None) -> None:
        self._paused_until = 0.0  # always try to close the run
        if stopped_by_signal is None:
            self._call("finish", success=success)
        else:
            self._call("finish", success=success, stopped_by_signal=stopped_by_signal)

    def log_model(self, model_dir: Path, *, registered_name: str | None) -> None:
        self._paused_until = 0.0
        self._call("log_model", model_dir, registered_name=registered_name)

    def lost_calls_report(self) -> list[str]:
        if not self.lost_calls:
            return []
        return [f"{self.name}: {self.lost_calls} log call(s) lost (tracking server unreachable or failing)"]


class CompositeTracker:
    """Sends every call to each of several guarded trackers."""

    name = "composite"

    def __init__(self, trackers: list[GuardedTracker]) -> None:
        self.trackers = tuple(trackers)

    def start(self, run: RunStart) -> None:
        for tracker in self.trackers:
            tracker.start(run)

    def log_metrics(self, metrics: dict[str, float], step: int, timestamp: float | None = None) -> None:
        for tracker in self.trackers:
            tracker.log_metrics(metrics, step, timestamp)

    def log_table(self, key: str, rows: list[dict[str, Any]], step: int) -> None:
        for tracker in self.trackers:
            tracker.log_table(key, rows, step)

    def log_dataset(self, dataset: Any, *, name: str, source: str) -> None:
        for tracker in self.trackers:
            tracker.log_dataset(dataset, name=name, source=source)

    def finish(self, *, success: bool, stopped_by_signal: int | None = None) -> None:
        for tracker in self.trackers:
            tracker.finish(success=success, stopped_by_signal=stopped_by_signal)

    def log_model(self, model_dir: Path, *, registered_name: str | None) -> None:
        for tracker in self.trackers:
            tracker.log_model(model_dir, registered_name=registered_name)

    def lost_calls_report(self) -> list[str]:
        return [line for tracker in self.trackers for line in tracker.lost_calls_report()]
