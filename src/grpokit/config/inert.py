"""TRL fields a config sets that act on nothing in a grpokit run, each said once as an `Override`.

grpokit hands `GRPOConfig` to TRL whole, but does a few things itself instead of TRL: it tracks to
MLflow and W&B with its own trackers (`outputs.tracking`), and pushes the final model to the Hub once
(`outputs.hub`). A field that only steers TRL's or transformers' way of doing those is then inert:

- `report_to: mlflow` / `wandb` without grpokit's keys that turn the tracker on
  (`mlflow_uri` + `mlflow_experiment_name`, `wandb_project`);
- `hub_strategy` other than `end` with `push_to_hub: true` (TRL's default, `every_save`, pushes every
  checkpoint; grpokit pushes the final, possibly merged, model once).

The vLLM options a machine without CUDA leaves unused are the CPU fallbacks' (`config.fallbacks`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from grpokit.config.overrides import INERT, Override
from grpokit.config.packages import report_to_names

TRACKER_KEYS = {"mlflow": "mlflow_uri and mlflow_experiment_name", "wandb": "wandb_project"}


def inert_options(options, trl_args: Mapping[str, Any]) -> list[Override]:
    """The TRL fields of the resolved config that grpokit's run does not act on, with what does instead."""
    overrides = []
    for name, keys in TRACKER_KEYS.items():
        if name in report_to_names(trl_args) and not _tracker_on(options, name):
            overrides.append(
                Override(f"report_to: {name}", name, INERT, f"grpokit tracks to {name} with its own tracker, "
                         f"which {keys} turn on; set them to track there")
            )
    strategy = str(trl_args.get("hub_strategy", "every_save")).split(".")[-1].lower()
    if trl_args.get("push_to_hub") and strategy != "end":
        overrides.append(
            Override("hub_strategy", strategy, INERT, "grpokit pushes the final (merged, if merge_weights) model once, "
                     "when training ends; checkpoints are not pushed")
        )
    return overrides


def _tracker_on(options, name: str) -> bool:
    if name == "mlflow":
        return bool(options.mlflow_uri and options.mlflow_experiment_name)
    return bool(options.resolved_wandb_project)
