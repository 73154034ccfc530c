"""What the demos (`grpokit demo --task addition|tools|aws-sample`) do alike around their own task.

Each demo module (`demo`, `demo_tools`, `demo_aws_sample`) writes its task's data, measures its held-out
figures in a callback and prints its own summary; this module holds the steps they share: a clean
output folder, the demo config with the run's paths placed in it, torch's thread count for the run,
and `summary.json`.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from grpokit.outputs.files import (
    CONFIG_FILE,
    HELDOUT_COMPLETIONS_FILE,
    METRICS_FILE,
    PLOT_FILE,
    REPORT_FILE,
    SUMMARY_FILE,
    atomic_write_text,
)

# What a demo writes that a previous demo in the same folder may have left: removed before it starts.
DEMO_OUTPUT_FILES = (METRICS_FILE, HELDOUT_COMPLETIONS_FILE, SUMMARY_FILE, REPORT_FILE, PLOT_FILE, CONFIG_FILE)


def fresh_output_dir(output_dir: str | Path) -> Path:
    """`output_dir` as a Path, without the files an earlier demo there wrote (`DEMO_OUTPUT_FILES`)."""
    output_dir = Path(output_dir)
    for name in DEMO_OUTPUT_FILES:
        (output_dir / name).unlink(missing_ok=True)
    return output_dir


def load_task_config(
    settings: Mapping[str, Any],
    output_dir: Path,
    config_path: str | Path | None,
    overrides: Sequence[str],
    *,
    train_data_file: str,
):
    """The demo's config (`settings`, or the file `config_path`) writing to `output_dir` and training on
    `output_dir / train_data_file`, then `overrides`."""
    from grpokit.config.loading import load_config

    placement = [f"output_dir={output_dir}", f"train_dataset_path={output_dir / train_data_file}"]
    if config_path is not None:
        return load_config(config_path, [*placement, *overrides])
    return load_config(data=dict(settings), overrides=[*placement, *overrides])


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """torch's intra-op thread count set to `count` inside the block (a demo's figures depend on it), then restored."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def write_summary(output_dir: Path, summary) -> Path:
    """`summary` (a dataclass) as `output_dir/summary.json`, written atomically; its path."""
    path = output_dir / SUMMARY_FILE
    atomic_write_text(path, json.dumps(asdict(summary), indent=2) + "\n")
    return path


def mean(values: Sequence[float]) -> float | None:
    """The mean, or None for no values."""
    return sum(values) / len(values) if values else None
