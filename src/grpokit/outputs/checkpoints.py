"""Checkpoints: marking one complete once written, and finding the one to resume from.

A checkpoint directory is `checkpoint-<step>` as the transformers Trainer writes it. grpokit marks
one complete (`grpokit_complete.json`) after the trainer has finished writing it, with a manifest of
its files (sizes and checksums, see `checkpoint_checks`); a checkpoint made by plain transformers/TRL
counts as complete when its trainer state and weights are present.

Resume never trusts a checkpoint blindly: the newest complete one is verified first, and one that
fails (a truncated `model.safetensors`, a file missing or changed) is set aside into `damaged-<time>/`
with one warning saying what was wrong; the run resumes from the newest one that passes.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from pathlib import Path

from transformers import TrainerCallback

from grpokit.errors import ConfigError
from grpokit.outputs.checkpoint_checks import checkpoint_problem, manifest
from grpokit.outputs.files import (
    COMPLETE_MARKER,
    DAMAGED_DIR_FORMAT,
    SUPERSEDED_DIR_FORMAT,
    TEMPORARY_SUFFIX,
    atomic_write_text,
)

logger = logging.getLogger("grpokit.checkpoints")

CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")
WEIGHT_FILES = ("adapter_model.safetensors", "model.safetensors", "model.safetensors.index.json")


def checkpoint_step(path: Path) -> int | None:
    match = CHECKPOINT_PATTERN.match(path.name)
    return int(match.group(1)) if match else None


def is_complete_checkpoint(path: Path) -> bool:
    """True when `path` holds a checkpoint the trainer finished writing."""
    if not path.is_dir():
        return False
    if (path / COMPLETE_MARKER).is_file():
        return True
    has_state = (path / "trainer_state.json").is_file()
    has_weights = any((path / name).is_file() for name in WEIGHT_FILES) or any(path.glob("pytorch_model_fsdp*"))
    return has_state and has_weights and not any(path.glob("*" + TEMPORARY_SUFFIX))


def list_checkpoints(directory: str | Path) -> list[Path]:
    """All `checkpoint-<step>` directories under `directory`, oldest step first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [(checkpoint_step(p), p) for p in directory.iterdir() if p.is_dir() and checkpoint_step(p) is not None]
    return [path for _, path in sorted(found)]


def last_complete_checkpoint(directory: str | Path, *, set_aside_damaged: bool = False) -> Path | None:
    """The highest-step complete checkpoint that passes verification; others are skipped with a warning.

    With `set_aside_damaged` (the main process, before resuming), a damaged one is also moved into
    `damaged-<time>/` so no later run tries it again; nothing is deleted.
    """
    for path in reversed(list_checkpoints(directory)):
        if not is_complete_checkpoint(path):
            logger.warning("skipping incomplete checkpoint %s (it was cut short; an earlier one is used)", path)
            continue
        problem = checkpoint_problem(path)
        if problem is None:
            return path
        moved = _set_aside_damaged(path) if set_aside_damaged else None
        logger.warning(
            "checkpoint %s is damaged (%s)%s; an earlier one is used", path, problem, f", moved to {moved}" if moved else ""
        )
    return None


def _set_aside_damaged(path: Path) -> Path | None:
    target = path.parent / time.strftime(DAMAGED_DIR_FORMAT)
    try:
        target.mkdir(parents=True, exist_ok=True)
        path.rename(target / path.name)
    except FileNotFoundError:  # another process of the job moved it first
        return None
    return target / path.name


def resume_checkpoint(resume: str, checkpoint_dir: str | Path) -> Path | None:
    """What `resume: auto | never | PATH` means for this run: the checkpoint to resume from, or None."""
    if resume == "never":
        return None
    if resume == "auto":
        return last_complete_checkpoint(checkpoint_dir, set_aside_damaged=os.environ.get("RANK", "0") == "0")
    path = Path(resume).expanduser()
    if checkpoint_step(path) is None and path.is_dir():
        latest = last_complete_checkpoint(path)
        if latest is not None:
            return latest
    if not is_complete_checkpoint(path):
        raise ConfigError(
            f"resume: {resume} is not a complete checkpoint directory",
            where="resume",
            fix="use 'auto', 'never', or the path of a checkpoint-<step> directory written by a previous run",
        )
    problem = checkpoint_problem(path)
    if problem is not None:
        raise ConfigError(
            f"resume: {resume} is damaged: {problem}",
            where="resume",
            fix="resume from an earlier checkpoint (resume: auto picks the newest whole one), or resume: never",
        )
    return path


def checkpoint_global_step(path: Path) -> int:
    """The optimizer step a checkpoint was saved at, from its trainer state (its name as a fallback)."""
    state = path / "trainer_state.json"
    if state.is_file():
        return int(json.loads(state.read_text(encoding="utf-8")).get("global_step", 0))
    return checkpoint_step(path) or 0


def set_aside_later_checkpoints(directory: str | Path, after_step: int) -> Path | None:
    """Move checkpoints past `after_step` into `superseded-<time>/`, so they are never resumed or half-overwritten.

    A run that starts over (`resume: never`, `after_step` 0) or resumes from an earlier checkpoint
    than the last would otherwise write its checkpoints over, or next to, those of the run before;
    moving them keeps that run's work (nothing is deleted) without mixing the two. Returns the folder
    they went to, or None when there was nothing to move.
    """
    later = [path for path in list_checkpoints(directory) if (checkpoint_step(path) or 0) > after_step]
    if not later:
        return None
    target = Path(directory) / time.strftime(SUPERSEDED_DIR_FORMAT)
    target.mkdir(parents=True, exist_ok=True)
    for path in later:
        path.rename(target / path.name)
    logger.warning("moved %d checkpoint(s) past step %d of an earlier run to %s", len(later), after_step, target)
    return target


class CheckpointMarkerCallback(TrainerCallback):
    """Mark a checkpoint complete once the trainer has written all of it.

    `on_save` runs after model, optimizer, scheduler, RNG and trainer state are on disk, so a
    checkpoint without the marker was cut short (crash, kill, spot interruption) and is never resumed.
    """

    def on_save(self, args, state, control, **kwargs):
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.barrier()  # every rank's shards are written before the manifest measures them
        if not state.is_world_process_zero:
            return
        checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if checkpoint.is_dir():
            write_complete_marker(checkpoint, state.global_step)


def write_complete_marker(checkpoint: Path, step: int) -> None:
    """Write the marker that says `checkpoint` was written whole, with its manifest (atomically: never half there)."""
    record = {"step": step, "time": time.time(), **manifest(checkpoint)}
    atomic_write_text(checkpoint / COMPLETE_MARKER, json.dumps(record, indent=1))
