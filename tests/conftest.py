"""Shared fixtures: offline Hugging Face, the built-in tiny model, small generated datasets."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

# No test may reach a hub; tracking stays off unless a test turns it on.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["WANDB_MODE"] = "disabled"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
# One torch thread per test process and per child it starts: `make test` runs one pytest process per core, so
# torch's default (a thread per core in each) only makes the processes wait on each other's threads.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")


# .ci/run sets GRPOKIT_CI=1: there, a check that needs a tool (a browser, deepspeed) fails when the tool is
# missing instead of skipping, so a failed install cannot turn a check off with CI still green.
IN_CI = os.environ.get("GRPOKIT_CI") == "1"


def skip_unless_in_ci(reason: str) -> None:
    """Skip the test with `reason` on a developer's machine; fail it under CI (GRPOKIT_CI=1)."""
    if IN_CI:
        pytest.fail(f"{reason}; CI installs it (.ci/run, `make install`), so this check may not skip there", pytrace=False)
    pytest.skip(reason)


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return path


@pytest.fixture
def addition_jsonl(tmp_path: Path) -> Path:
    """32 rows of 'a+b=' prompts with their answers."""
    rows = [{"prompt": f"{a}+{b}=", "answer": str(a + b)} for a, b in zip(range(10, 42), range(50, 82))]
    return write_jsonl(tmp_path / "data" / "train.jsonl", rows)


# Trains builtin:tiny in seconds: 1 prompt x 4 completions of at most 4 tokens per step, a checkpoint every step.
TINY_TRAINING = {
    "model_id": "builtin:tiny",
    "rewards": [
        {"name": "rouge_l", "reference_column": "answer", "score": "f1"},
        {"name": "length", "target_length": 3},
    ],
    "max_steps": 2,
    "per_device_train_batch_size": 4,
    "num_generations": 4,
    "max_completion_length": 4,
    "learning_rate": 1e-3,
    "save_steps": 1,
    "seed": 0,
}


@pytest.fixture
def tiny_config(tmp_path: Path, addition_jsonl: Path) -> dict:
    """A config mapping that trains builtin:tiny for 2 quick steps on the addition rows."""
    return {**TINY_TRAINING, "train_dataset_path": str(addition_jsonl), "output_dir": str(tmp_path / "out")}


@pytest.fixture(scope="session")
def tiny_reward_model(tmp_path_factory) -> Path:
    """A randomly initialised 2-layer Qwen2ForSequenceClassification, num_labels 1, with builtin:tiny's tokenizer."""
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForSequenceClassification

    from grpokit.model.builtin import resolve_model_path

    directory = tmp_path_factory.mktemp("reward_model")
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("builtin:tiny"))
    config = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=2, num_labels=1, pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    torch.manual_seed(0)
    Qwen2ForSequenceClassification(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
