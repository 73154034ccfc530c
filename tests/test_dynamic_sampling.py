"""Dynamic sampling: zero-spread groups are dropped and replaced, on one process and on two.

The batch arithmetic is checked on hand-made TRL generation outputs (rows numbered so every kept row
can be named); the trainer hook on a real GRPOTrainer with a generation step that returns hand-made
rounds; the whole loop with a reward that gives some prompts the same score every time, in one
process and in a two-process `--nproc 2` job over gloo.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from grpokit.compat.trl_internals import GenerationRound
from grpokit.config.dynamic_sampling import DynamicSamplingOptions
from grpokit.rewards.groups import (
    group_spreads,
    weighted_totals,
    zero_spread_fraction,
    zero_spread_mask,
    zero_spread_mask_per_reward,
)

PAD = 99


def hand_made_round(row_ids: list[int], prompt_width: int, completion_width: int) -> dict:
    """A TRL-shaped generation output whose rows carry their number in every tensor.

    Row r: prompt `[PAD..., r]` left-padded to `prompt_width`; completion `[r, r+1000, PAD...]` (two
    tokens) right-padded to `completion_width`; advantage r / 10; old log-probs -r on its two tokens.
    """
    rows = len(row_ids)
    prompt_ids = torch.full((rows, prompt_width), PAD)
    prompt_ids[:, -1] = torch.tensor(row_ids)
    prompt_mask = torch.zeros((rows, prompt_width), dtype=torch.long)
    prompt_mask[:, -1] = 1
    completion_ids = torch.full((rows, completion_width), PAD)
    completion_ids[:, 0] = torch.tensor(row_ids)
    completion_ids[:, 1] = torch.tensor(row_ids) + 1000
    completion_mask = torch.zeros((rows, completion_width), dtype=torch.long)
    completion_mask[:, :2] = 1
    old_logps = -completion_mask.float() * torch.tensor(row_ids, dtype=torch.float)[:, None]
    return {
        "prompt_ids": prompt_ids,
        "prompt_mask": prompt_mask,
        "completion_ids": completion_ids,
        "completion_mask": completion_mask,
        "advantages": torch.tensor(row_ids, dtype=torch.float) / 10,
        "old_per_token_logps": old_logps,
        "num_items_in_batch": torch.tensor(2 * rows),
    }


def row_numbers(batch: dict) -> list[int]:
    return batch["completion_ids"][:, 0].tolist()


# ----------------------------------------------------------------------------- group statistics


@pytest.mark.parametrize(
    ("values", "group_size", "expected"),
    [
        ([1.0, 1.0, 0.0, 1.0, 2.0, 2.0], 2, [True, False, True]),  # all correct, mixed, all wrong
        ([0.5, 0.5 + 1e-9, 0.5, 0.5], 4, [True]),  # float noise is no spread
        ([None, 1.0, None, None], 2, [True, True]),  # one score left is no spread; none left is none
        ([float("nan"), 0.0, 1.0, float("nan")], 2, [True, True]),
        ([0.0, 0.1, 0.2], 3, [False]),
    ],
)
def test_zero_spread_mask_table(values, group_size, expected):
    assert zero_spread_mask(values, group_size) == expected


def test_zero_spread_mask_agrees_with_the_per_reward_statistic_of_the_logs():
    generator = torch.Generator().manual_seed(0)
    values = torch.randint(0, 2, (64,), generator=generator).float().tolist()
    mask = zero_spread_mask(values, 4)
    assert sum(mask) / len(mask) == pytest.approx(zero_spread_fraction(values, group_size=4))


def test_weighted_totals_follow_trls_rule():
    assert weighted_totals([[1.0, 0.5], [0.0, None], [None, float("nan")]], [1.0, 2.0]) == [2.0, 0.0, None]
    with pytest.raises(ValueError, match="2 scores for 3 rewards"):
        weighted_totals([[1.0, 0.5]], [1.0, 1.0, 1.0])


def test_per_reward_rule_needs_every_reward_flat():
    # group 1: the two rewards trade off (the total is flat, each reward is not); group 2: both flat
    scores = [[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 0.0]]
    assert zero_spread_mask(weighted_totals(scores, [1.0, 1.0]), 2) == [True, True]
    assert zero_spread_mask_per_reward(scores, 2) == [False, True]


def test_group_spreads_refuses_a_ragged_batch():
    assert group_spreads([1.0, 3.0, 2.0, 2.0], 2) == [2.0, 0.0]
    with pytest.raises(ValueError, match="do not split"):
        group_spreads([1.0, 2.0, 3.0], 2)


def test_options_take_a_bare_switch_and_check_rounds():
    assert DynamicSamplingOptions.model_validate(True).enabled
    assert not DynamicSamplingOptions().enabled
    with pytest.raises(ValueError):
        DynamicSamplingOptions(enabled=True, max_rounds=1)


# ----------------------------------------------------------------------------- the batch of several rounds


def test_the_batch_keeps_exactly_the_informative_groups_of_a_hand_made_round():
    from grpokit.trainer.dynamic_sampling.rounds import BatchRounds

    rounds = BatchRounds(group_size=2, world_size=1, process_index=0, target_rows=8)
    # rewards per row: groups (0,1) all 1, (2,3) differ, (4,5) all 0, (6,7) differ
    rounds.add(hand_made_round(list(range(8)), 2, 3), zero_spread_mask([1, 1, 0, 1, 0, 0, 1, 0], 2))
    assert rounds.informative_rows() == [4] and rounds.missing_rows() == 4
    assert rounds.next_round_rows() == 8  # 4 missing at a keep rate of 1/2, at most one generation batch
    # round 2, wider: groups (10,11) differ, (12,13) flat, (14,15) and (16,17) differ
    rounds.add(hand_made_round(list(range(10, 18)), 3, 5), zero_spread_mask([1, 0, 1, 1, 0, 1, 1, 0], 2))
    assert rounds.missing_rows() == 0

    batch = rounds.assemble(pad_token_id=PAD)
    assert row_numbers(batch) == [2, 3, 6, 7, 10, 11, 14, 15]  # informative rows, in order; no zero-spread row
    assert "num_items_in_batch" not in batch  # recounted by the trainer over every process
    assert batch["prompt_ids"][0].tolist() == [PAD, PAD, 2]  # round 1's prompts left-padded to round 2's width
    assert batch["prompt_mask"][0].tolist() == [0, 0, 1]
    assert batch["completion_ids"][0].tolist() == [2, 1002, PAD, PAD, PAD]  # completions right-padded
    assert batch["completion_mask"][0].tolist() == [1, 1, 0, 0, 0]
    assert batch["old_per_token_logps"][1].tolist() == [-3.0, -3.0, 0.0, 0.0, 0.0]
    assert batch["advantages"].tolist() == pytest.approx([0.2, 0.3, 0.6, 0.7, 1.0, 1.1, 1.4, 1.5])
    summary = rounds.summary()
    assert (summary.rounds, summary.groups, summary.zero_spread_groups, summary.extra_rows) == (2, 8, 3, 8)
    assert summary.groups_dropped == 3 and summary.zero_spread_rows_trained == 0


def test_when_rounds_run_out_zero_spread_rows_fill_the_batch_after_the_informative_ones():
    from grpokit.trainer.dynamic_sampling.rounds import BatchRounds

    rounds = BatchRounds(group_size=2, world_size=1, process_index=0, target_rows=8)
    rounds.add(hand_made_round(list(range(8)), 2, 3), [True, False, True, False])
    assert row_numbers(rounds.assemble(pad_token_id=PAD)) == [2, 3, 6, 7, 0, 1, 4, 5]
    summary = rounds.summary()
    assert summary.zero_spread_rows_trained == 4 and summary.groups_dropped == 0


def test_two_processes_keep_the_same_groups_when_groups_span_processes():
    from grpokit.trainer.dynamic_sampling.rounds import BatchRounds

    # 2 processes x 4 rows, groups of 2: process 0 holds groups 0-1, process 1 groups 2-3
    per_process = [BatchRounds(group_size=2, world_size=2, process_index=p, target_rows=4) for p in (0, 1)]
    for process, rounds in enumerate(per_process):
        rounds.add(hand_made_round([process * 4 + i for i in range(4)], 2, 3), [True, False, False, False])
    assert [r.informative_rows() for r in per_process] == [[2, 4], [2, 4]]  # every process sees every process
    assert per_process[0].next_round_rows() == 3  # 2 missing at a keep rate of 6/8; 3 rows make whole groups over 2
    # round 2: 3 rows each, groups of 2 over 6 rows: group 1 spans the processes and is flat
    for process, rounds in enumerate(per_process):
        rounds.add(hand_made_round([100 + process * 3 + i for i in range(3)], 2, 3), [False, True, False])
    assert per_process[0].missing_rows() == 0
    assert row_numbers(per_process[0].assemble(pad_token_id=PAD)) == [2, 3, 100, 101]
    assert row_numbers(per_process[1].assemble(pad_token_id=PAD)) == [4, 5, 6, 7]
    summary = per_process[1].summary()
    assert (summary.groups, summary.zero_spread_groups, summary.extra_rows) == (7, 2, 6)
    with pytest.raises(ValueError, match="do not cover"):
        per_process[0].add(hand_made_round([0, 1, 2], 2, 3), [False])


def test_an_image_output_is_refused_with_a_clear_error():
    from grpokit.errors import RunError
    from grpokit.trainer.dynamic_sampling.rounds import BatchRounds

    rounds = BatchRounds(group_size=2, world_size=1, process_index=0, target_rows=2)
    rounds.add({**hand_made_round([0, 1], 2, 3), "pixel_values": torch.zeros(2, 3)}, [False])
    with pytest.raises(RunError, match="pixel_values"):
        rounds.assemble(pad_token_id=PAD)


# ----------------------------------------------------------------------------- the trainer hook


@pytest.fixture(scope="module")
def sampling_trainer(tmp_path_factory):
    """A DynamicSamplingGRPOTrainer on the built-in model: groups of 2, 4 rows per step, 8 distinct prompts."""
    import datasets
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig

    from grpokit.model.builtin import resolve_model_path
    from grpokit.trainer.dynamic_sampling.trainer import DynamicSamplingGRPOTrainer

    class CaptureLogs(TrainerCallback):
        def __init__(self) -> None:
            self.logs: list[dict] = []

        def on_log(self, args, state, control, logs=None, **kwargs):
            self.logs.append(dict(logs or {}))

    capture = CaptureLogs()

    path = resolve_model_path("builtin:tiny")
    args = GRPOConfig(
        output_dir=str(tmp_path_factory.mktemp("ds")), use_cpu=True, bf16=False, per_device_train_batch_size=4,
        num_generations=2, max_completion_length=2, report_to="none", seed=3,
    )  # fmt: skip
    trainer = DynamicSamplingGRPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(path),
        reward_funcs=[lambda completions, **kwargs: [0.0] * len(completions)],
        args=args,
        train_dataset=datasets.Dataset.from_dict({"prompt": [f"{i}+{i}=" for i in range(8)], "n": list(range(8))}),
        processing_class=AutoTokenizer.from_pretrained(path),
        callbacks=[capture],
        dynamic_sampling=DynamicSamplingOptions(enabled=True, max_rounds=3),
    )
    trainer.captured = capture.logs
    return trainer


@pytest.mark.slow
def test_the_trainer_drops_the_zero_spread_groups_and_draws_replacements(sampling_trainer):
    trainer = sampling_trainer
    calls: list[list[dict]] = []
    round_rewards = [[1.0, 1.0, 0.0, 1.0], [1.0, 0.0, 2.0, 2.0]]  # round 1: group 0 flat; round 2: group 1 flat

    def generate(rows):
        calls.append(rows)
        start = 100 * (len(calls) - 1)
        rewards = torch.tensor(round_rewards[len(calls) - 1])[:, None]  # what TRL's scoring computes
        return GenerationRound(hand_made_round(list(range(start, start + len(rows))), 2, 3), rewards)

    trainer.model.train()
    batch = trainer.informative_generation_batch([{"prompt": "a"}] * 4, generate)
    assert row_numbers(batch) == [2, 3, 100, 101]  # round 1's informative group, then round 2's first
    assert batch["num_items_in_batch"].item() == 8  # 4 rows x 2 completion tokens: the dropped rows no longer count
    refill = calls[1]
    assert len(refill) == 4 and [row["prompt"] for row in refill[::2]] == [row["prompt"] for row in refill[1::2]]
    assert {row["prompt"] for row in refill} <= {f"{i}+{i}=" for i in range(8)} and "n" in refill[0]

    trainer.log({"loss": 0.0})
    logged = trainer.captured[-1]
    assert logged["dynamic_sampling/groups_dropped"] == 2  # one flat group per round, neither trained on
    assert logged["dynamic_sampling/zero_spread_share"] == 0.5
    assert logged["dynamic_sampling/generation_rounds"] == 2
    assert logged["dynamic_sampling/extra_completions"] == 4
    assert logged["dynamic_sampling/zero_spread_groups_trained"] == 0
    trainer.log({"loss": 0.0})
    assert not any(key.startswith("dynamic_sampling/") for key in trainer.captured[-1])  # nothing new: nothing logged


def test_figures_are_per_optimizer_step_since_the_batches_logged_also_after_a_resume():
    from grpokit.trainer.dynamic_sampling.rounds import RoundsSummary
    from grpokit.trainer.dynamic_sampling.trainer import StepStatistics

    statistics = StepStatistics()
    for step in range(50, 60):  # a run resumed at step 50, logging every 10 steps
        summary = RoundsSummary(rounds=2, groups=12, zero_spread_groups=4, zero_spread_rows_trained=0, extra_rows=32, group_size=8)
        statistics.record(summary, 0.5, global_step=step)
    logs = statistics.flush(60)
    assert logs["dynamic_sampling/groups_dropped"] == 4 and logs["dynamic_sampling/extra_completions"] == 32
    assert logs["dynamic_sampling/extra_generation_seconds"] == 0.5 and logs["dynamic_sampling/zero_spread_share"] == 1 / 3
    assert statistics.flush(61) == {}


def test_refill_prompts_are_reproducible_and_distinct():
    from grpokit.trainer.dynamic_sampling.trainer import refill_prompt_indices

    draw = {"seed": 0, "step": 3, "batch": 0, "round_index": 1}
    first = refill_prompt_indices(50, 10, **draw)
    assert first == refill_prompt_indices(50, 10, **draw) and len(set(first)) == 10
    assert first != refill_prompt_indices(50, 10, **{**draw, "round_index": 2})
    assert len(refill_prompt_indices(3, 10, **draw)) == 10  # a small dataset repeats prompts


def test_an_image_dataset_is_refused_at_build_time():
    import datasets

    from grpokit.errors import ConfigError
    from grpokit.trainer.dynamic_sampling.trainer import _check_dataset

    with pytest.raises(ConfigError, match="image"):
        _check_dataset(datasets.Dataset.from_dict({"prompt": ["a"], "image": [None]}))


# ----------------------------------------------------------------------------- whole runs

FLAT_ON_EVEN = '''
import json
import os
import zlib
from pathlib import Path


def flat_on_even(prompts, completions, log_dir=".", **kwargs):
    """1.0 for every completion of a prompt whose first number is even (a zero-spread group); else a hash of the text."""
    scores = [1.0 if int(p.split("+")[0]) % 2 == 0 else float(zlib.crc32(c.encode()) % 5) for p, c in zip(prompts, completions)]
    with open(Path(log_dir) / f"rank{os.environ.get('RANK', '0')}.jsonl", "a", encoding="utf-8") as handle:
        handle.write(json.dumps({"prompts": prompts, "scores": scores}) + "\\n")
    return scores
'''


@pytest.fixture
def sampling_config(tmp_path: Path, tiny_config: dict) -> Path:
    (tmp_path / "flat_on_even.py").write_text(FLAT_ON_EVEN, encoding="utf-8")
    (tmp_path / "scores").mkdir()
    config = {
        **tiny_config,
        "rewards": [{"name": "./flat_on_even.py:flat_on_even", "log_dir": str(tmp_path / "scores")}],
        "dynamic_sampling": {"enabled": True, "max_rounds": 4},
        "save_strategy": "no",
        "log_completions_every": 0,  # no before/after answers: every scoring in the log is a training step's
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def metrics_lines(config_path: Path) -> list[dict]:
    out = Path(yaml.safe_load(config_path.read_text())["output_dir"])
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def check_dynamic_sampling_logs(lines: list[dict], max_rounds: int = 4) -> None:
    assert [line["step"] for line in lines] == [1, 2], "each step logged once"
    for line in lines:
        rounds = line["dynamic_sampling/generation_rounds"]
        assert 1 <= rounds <= max_rounds
        assert line["dynamic_sampling/groups_dropped"] >= 0 and line["dynamic_sampling/extra_generation_seconds"] >= 0
        assert (rounds > 1) == (line["dynamic_sampling/extra_completions"] > 0)
        assert 0 <= line["dynamic_sampling/zero_spread_share"] <= 1


@pytest.mark.slow
def test_a_run_with_dynamic_sampling_trains_without_flat_groups_and_logs_its_figures(sampling_config: Path, monkeypatch):
    from trl import GRPOTrainer

    from grpokit.config import load_config
    from grpokit.trainer import train

    trained_prompts: list[str] = []  # the prompt of every row the loss saw, read from TRL's own batch
    compute_loss = GRPOTrainer.compute_loss

    def recording_compute_loss(self, model, inputs, *args, **kwargs):
        trained_prompts.extend(self.processing_class.batch_decode(inputs["prompt_ids"], skip_special_tokens=True))
        return compute_loss(self, model, inputs, *args, **kwargs)

    monkeypatch.setattr(GRPOTrainer, "compute_loss", recording_compute_loss)
    result = train(load_config(sampling_config, ["dynamic_sampling.max_rounds=8"]))
    assert result.global_step == 2
    lines = metrics_lines(sampling_config)
    check_dynamic_sampling_logs(lines, max_rounds=8)
    assert any(line["dynamic_sampling/generation_rounds"] > 1 for line in lines), "seed 0 draws a flat group first"
    scored = [json.loads(line) for line in (sampling_config.parent / "scores" / "rank0.jsonl").read_text().splitlines()]
    assert len(scored) == sum(line["dynamic_sampling/generation_rounds"] for line in lines)  # one scoring per round
    assert len(trained_prompts) == 2 * 4, "two steps of one group of 4"

    # Each round is one group of 4 completions of one prompt; it is flat when its 4 scores are equal.
    replaced = 0
    for step, line in enumerate(lines):
        rounds = [scored.pop(0) for _ in range(int(line["dynamic_sampling/generation_rounds"]))]
        flat = [r["prompts"][0] for r in rounds if len(set(r["scores"])) == 1]
        with_spread = [r["prompts"][0] for r in rounds if len(set(r["scores"])) > 1]
        trained = trained_prompts[4 * step : 4 * step + 4]
        fillers = line["dynamic_sampling/zero_spread_groups_trained"]
        assert line["dynamic_sampling/groups_dropped"] + fillers == len(flat), (step, rounds)
        trained_flat = [p for p in trained if p in flat and p not in with_spread]
        assert len(trained_flat) == 4 * fillers, f"step {step + 1} trained on flat groups {trained_flat}: {rounds}"
        if flat and with_spread:
            assert set(trained) <= set(with_spread)
            replaced += 1
    assert replaced, "a step where flat groups were generated, left out, and replaced by a group with spread"


@pytest.mark.slow
def test_two_processes_with_dynamic_sampling_log_each_step_once(sampling_config: Path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID"):
        env.pop(name, None)
    command = [sys.executable, "-m", "grpokit", "train", str(sampling_config), "--nproc", "2"]
    result = subprocess.run(command, cwd=sampling_config.parent, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    lines = metrics_lines(sampling_config)
    check_dynamic_sampling_logs(lines)
    per_rank = [
        [json.loads(line) for line in (sampling_config.parent / "scores" / f"rank{rank}.jsonl").read_text().splitlines()]
        for rank in (0, 1)
    ]
    rounds = sum(line["dynamic_sampling/generation_rounds"] for line in lines)
    assert len(per_rank[0]) == len(per_rank[1]) == rounds, "both ranks generate the same rounds in lockstep"
    assert result.stdout.count("trained 2 steps") == 1
