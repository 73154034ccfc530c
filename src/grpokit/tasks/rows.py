"""Writing a task's rows where a run reads them: the AWS sample's `<channel>/dataset.json` (JSON Lines)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from grpokit.outputs.files import atomic_write_text

DATASET_FILE_NAME = "dataset.json"  # the AWS sample's file name inside a channel directory


def write_dataset(out_dir: str | Path, rows: Iterable[dict[str, Any]]) -> Path:
    """Write `rows` as `out_dir/dataset.json`, one JSON object per line (UTF-8 kept), atomically; returns the file."""
    path = Path(out_dir) / DATASET_FILE_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    return path
