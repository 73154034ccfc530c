"""Every file and folder a run writes, by name, and the one way grpokit writes them: whole or not at all.

| name | where | written by |
|---|---|---|
| `grpokit_config.yaml` | output_dir | the recipe: the resolved config, secrets masked |
| `run_info.json` | output_dir | the recipe: versions of grpokit and the libraries, the hardware (`outputs.run_info`) |
| `trl_differences.txt` | output_dir | the recipe: every field that differs from the installed TRL's defaults, and why |
| `metrics.jsonl` | output_dir | one JSON object per logged step |
| `sample_completions.jsonl` | output_dir | a few training completions per logged step |
| `before_after_completions.jsonl` | output_dir | the same few prompts answered before and after training |
| `completions.jsonl` | output_dir | the demo's held-out completions |
| `summary.json` | output_dir | the demo's summary |
| `report.html`, `curves.png`, `dynamics.png` | output_dir | the report |
| `health.jsonl` | output_dir | the health checks' and the hang watchdog's events |
| `hang_stacks/rank-<N>.txt` | output_dir | every rank's Python stacks when the hang watchdog fires |
| `compare.html` | where `grpokit compare --output` says | two runs side by side |
| `checkpoints/` | output_dir (or checkpoint_dir) | the trainer's `checkpoint-<step>/` folders |
| `grpokit_complete.json` | each checkpoint | the marker that the checkpoint was written whole, with each file's size (and checksum) |
| `damaged-<time>/` | checkpoint dir | checkpoints that failed verification on resume, set aside (never deleted) |
| `.grpokit-run.lock` | output_dir | which process runs on this output_dir (one run at a time); removed at the end |
| `.model-staging/` | output_dir | the final model while it is written |
| `tensorboard/`, `wandb/` | output_dir | tracker files |
| `mlflow_run.json`, `wandb_run.json` | checkpoint dir | the tracker run to continue on resume |
| `eval/eval.json`, `eval/eval_samples.jsonl` | model dir (or output_dir) | `grpokit eval` |
| `probe.json` | output_dir (or `grpokit probe --output`) | `grpokit probe`: per-prompt rewards, zero-spread share, projection |

`atomic_write_text` / `atomic_write_bytes` write to a temporary name in the same folder and rename
it over the target, so a reader (or a resumed run after a crash) never sees half a file.
"""

from __future__ import annotations

import os
from pathlib import Path

CONFIG_FILE = "grpokit_config.yaml"
RUN_INFO_FILE = "run_info.json"  # versions and hardware of the run
TRL_DIFFERENCES_FILE = "trl_differences.txt"  # the full table behind the log's compact block
METRICS_FILE = "metrics.jsonl"
SAMPLE_COMPLETIONS_FILE = "sample_completions.jsonl"  # training samples for the report
BEFORE_AFTER_FILE = "before_after_completions.jsonl"  # the same prompts before and after training
HELDOUT_COMPLETIONS_FILE = "completions.jsonl"  # the demo's held-out samples
SUMMARY_FILE = "summary.json"
REPORT_FILE = "report.html"
PLOT_FILE = "curves.png"
DYNAMICS_PLOT_FILE = "dynamics.png"  # the report's training-dynamics panels
HEALTH_FILE = "health.jsonl"
HANG_STACKS_DIR = "hang_stacks"
HANG_STACK_FILE_FORMAT = "rank-{rank}.txt"  # str.format, inside HANG_STACKS_DIR
COMPARE_FILE = "compare.html"
COMPLETE_MARKER = "grpokit_complete.json"
MODEL_STAGING_DIR = ".model-staging"
SUPERSEDED_DIR_FORMAT = "superseded-%Y%m%d-%H%M%S"  # time.strftime format for set-aside checkpoints
DAMAGED_DIR_FORMAT = "damaged-%Y%m%d-%H%M%S"  # time.strftime format for checkpoints that failed verification
RUN_LOCK_FILE = ".grpokit-run.lock"
TENSORBOARD_DIR = "tensorboard"
WANDB_DIR = "wandb"
MLFLOW_RUN_FILE = "mlflow_run.json"
WANDB_RUN_FILE = "wandb_run.json"
EVAL_DIR = "eval"
EVAL_FILE = "eval.json"
EVAL_SAMPLES_FILE = "eval_samples.jsonl"
PROBE_FILE = "probe.json"
TEMPORARY_SUFFIX = ".tmp"


def temporary_path(path: Path) -> Path:
    """Where `path` is written before it is renamed into place."""
    return path.with_name(path.name + TEMPORARY_SUFFIX)


def atomic_write_bytes(path: str | Path, content: bytes) -> Path:
    """Write `content` to `path` whole: to a temporary file next to it, then renamed over it."""
    path = Path(path)
    tmp = temporary_path(path)
    tmp.write_bytes(content)
    os.replace(tmp, path)
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """`atomic_write_bytes` for UTF-8 text."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def publish_staged(staging: str | Path, target: str | Path) -> list[str]:
    """Move every entry of a finished staging folder into `target` (each by one rename), then remove the folder.

    Returns the names moved. Staging and target are on one filesystem (the staging folder lives in
    `target`), so each rename is atomic: a loader sees the old file or the new one, never half of one.
    """
    staging, target = Path(staging), Path(target)
    names = []
    for path in sorted(staging.iterdir()):
        os.replace(path, target / path.name)
        names.append(path.name)
    staging.rmdir()
    return names
