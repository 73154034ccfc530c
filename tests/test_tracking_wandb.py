"""W&B in offline mode (read back from the run files) and TensorBoard event files, after a short real training."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from grpokit.config import load_config
from grpokit.trainer import train

pytest.importorskip("wandb")

SECRET = "wandb-SECRET-5151"
LEVELDB_BLOCK = 32768  # W&B's .wandb file is a LevelDB-style log of protobuf Records


def wandb_records(path: Path):
    """Every `wandb_internal_pb2.Record` in a `.wandb` file (7-byte file header, then 7-byte chunk headers)."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    position, pending = 7, b""
    while position + 7 <= len(data):
        if LEVELDB_BLOCK - position % LEVELDB_BLOCK < 7:  # block trailer padding
            position += LEVELDB_BLOCK - position % LEVELDB_BLOCK
            continue
        _checksum, length, chunk_type = struct.unpack("<IHB", data[position : position + 7])
        pending += data[position + 7 : position + 7 + length]
        position += 7 + length
        if chunk_type in (1, 4):  # FULL or LAST
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


@pytest.mark.slow
def test_wandb_offline_run_has_metrics_table_and_masked_key_and_tensorboard_events(tiny_config, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    config = load_config(
        data={
            **tiny_config,
            "wandb_project": "grpokit-test",
            "wandb_mode": "offline",
            "wandb_token": SECRET,
            "report_to": ["wandb", "tensorboard"],
            "log_completions_every": 1,
            "system_metrics_interval": 1.0,
        }
    )
    result = train(config)
    assert result.global_step == 2
    output_dir = Path(tiny_config["output_dir"])

    (run_dir,) = (output_dir / "wandb").glob(
        "offline-run-*"
    )  # grpokit's run only: transformers' WandbCallback is gone
    (run_file,) = run_dir.glob("run-*.wandb")
    records = list(wandb_records(run_file))
    (run_record,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    logged_config = {item.key: json.loads(item.value_json) for item in run_record.config.update}
    assert logged_config["wandb_token"] == "***" and logged_config["model_id"] == "builtin:tiny"

    history = [
        {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in r.history.item}
        for r in records
        if r.WhichOneof("record_type") == "history"
    ]
    by_step = {row["_step"]: row for row in history}
    assert set(by_step) == {1, 2}
    jsonl = [json.loads(line) for line in result.metrics_path.read_text().splitlines()]
    for line in jsonl:
        row = by_step[line["step"]]
        for key in (
            "reward",
            "rewards/rouge_l/mean",
            "rewards/length/mean",
            "rewards/length/std",
            "loss",
            "learning_rate",
        ):
            assert row[key] == pytest.approx(line[key]), key
        assert row["completions/_type"] == "table-file"
        assert not any(key.startswith("system/gpu") for key in row)  # no GPU here, and never fake copies
    assert "system/cpu_utilization_percent" in by_step[2]  # at least the last sample, taken at the end

    tables = sorted((run_dir / "files" / "media" / "table").glob("completions_*.table.json"))
    assert len(tables) == 2
    table = json.loads(tables[-1].read_text())
    assert {"step", "prompt", "completion", "rewards/rouge_l", "rewards/length"} <= set(table["columns"])
    assert len(table["data"]) == 4

    for path in run_dir.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), f"the W&B key leaked into {path}"
    assert (
        json.loads((output_dir / "checkpoints" / "wandb_run.json").read_text())["run_id"] == run_record.run_id
    )

    events = list((output_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert events, "report_to: tensorboard writes event files under output_dir/tensorboard"
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(events[0].parent))
    accumulator.Reload()
    assert "train/reward" in accumulator.Tags()["scalars"]
