"""Weights & Biases: one run per training (continued on resume), the same metrics, completions as `wandb.Table`.

The API key comes from `WANDB_API_KEY` or the config's `wandb_token`; it is handed to W&B in its
settings (never written to ~/.netrc) and appears masked in the logged config. `wandb_mode: offline`
writes the run under `<output_dir>/wandb/` for a later `wandb sync`.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from pathlib import Path
from typing import Any, Literal

from grpokit.compat.tracking_internals import dataset_fingerprint
from grpokit.outputs.files import WANDB_RUN_FILE, atomic_write_text
from grpokit.outputs.tracking.base import RunStart
from grpokit.secrets import is_secret_key

logger = logging.getLogger("grpokit.tracking")

RUN_ID_FILE = WANDB_RUN_FILE


def command_line_has_secret(argv: list[str]) -> bool:
    """True when an argument sets a secret (`--set wandb_token=...`): W&B would record it in the run's metadata."""
    keys = (key for arg in argv for key in re.findall(r"([A-Za-z0-9_.]+)=", arg))
    return any(is_secret_key(key.rsplit(".", 1)[-1]) for key in keys)


class WandbTracker:
    """Logs one training to one W&B run. Every method may raise; `GuardedTracker` catches."""

    name = "wandb"

    def __init__(self, *, project: str, mode: Literal["online", "offline"], api_key: str | None) -> None:
        self.project = project
        self.mode = mode
        self.api_key = api_key
        self.run = None

    def start(self, run: RunStart) -> None:
        import wandb

        previous_id = self._previous_run_id(run.state_dir) if run.resuming else None
        settings = wandb.Settings(
            api_key=self.api_key,
            sagemaker_disable=True,  # else W&B copies SageMaker hyperparameters (secrets included) into the config
            x_disable_meta=command_line_has_secret(sys.argv[1:]),
            disable_git=True,  # a git remote URL may carry credentials (https://user:token@host/...)
            silent=True,
        )
        self.run = wandb.init(
            project=self.project,
            name=run.run_name,
            id=previous_id,
            resume="allow" if previous_id else None,
            mode=self.mode,
            dir=str(run.output_dir),
            config=run.config,
            tags=[f"{key}:{value}"[:64] for key, value in run.tags.items()],
            settings=settings,
            reinit="create_new",
        )
        self._save_run_id(run.state_dir)
        logger.info("wandb: logging to run %s (%s)", self.run.id, self.mode)

    def _previous_run_id(self, state_dir: Path) -> str | None:
        path = state_dir / RUN_ID_FILE
        if not path.is_file():
            return None
        saved = json.loads(path.read_text(encoding="utf-8"))
        return saved["run_id"] if saved.get("project") == self.project else None

    def _save_run_id(self, state_dir: Path) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(state_dir / RUN_ID_FILE, json.dumps({"run_id": self.run.id, "project": self.project}))

    def log_metrics(self, metrics: dict[str, float], step: int, timestamp: float | None = None) -> None:
        # W&B keeps one value per key and step; its step must not go backwards, so every call uses the
        # trainer's global step and the wall-clock timestamp is W&B's own.
        self.run.log(dict(metrics), step=step)

    def log_table(self, key: str, rows: list[dict[str, Any]], step: int) -> None:
        import wandb

        columns = list(dict.fromkeys(column for row in rows for column in row))
        table = wandb.Table(columns=columns, data=[[row.get(column) for column in columns] for row in rows])
        self.run.log({key: table}, step=step)

    def log_dataset(self, dataset: Any, *, name: str, source: str) -> None:
        fingerprint = dataset_fingerprint(dataset)
        self.run.config.update(
            {f"dataset_{name}": {"source": source, "num_rows": len(dataset), "fingerprint": fingerprint}},
            allow_val_change=True,
        )

    def finish(self, *, success: bool, stopped_by_signal: int | None = None) -> None:
        if stopped_by_signal is not None:
            self.run.finish(exit_code=128 + stopped_by_signal)  # as a shell reports a process ended by that signal
        else:
            self.run.finish(exit_code=0 if success else 1)

    def log_model(self, model_dir: Path, *, registered_name: str | None) -> None:
        """The W&B run is closed when the model is saved; models go to MLflow (see docs/tracking.md)."""
