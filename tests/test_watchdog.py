"""The hang watchdog: its allowance worked out by hand, stack dumps read back, and stalled runs that it stops with
exit code 4 (one process, and two under `--nproc 2`), leaving a checkpoint that resumes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from grpokit.config import load_config
from grpokit.outputs.health_events import read_health_events
from grpokit.trainer.stacks import Frame, describe_where, dump_all_stacks, read_where, thread_frames
from grpokit.trainer.watchdog import HangOptions, HangWatchdog, stack_file

RUN_TIMEOUT_S = 300


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def watchdog(tmp_path: Path, **options) -> tuple[HangWatchdog, FakeClock, list[int]]:
    clock, exits = FakeClock(), []
    dog = HangWatchdog(
        HangOptions(**options), tmp_path, clock=clock, exit_process=exits.append, in_training=lambda frames: True, peer_wait_s=0.3
    )
    return dog, clock, exits


# ----------------------------------------------------------------------------- reading stacks


def blocked_in_here(release: threading.Event) -> None:
    release.wait(30)


def test_a_dump_names_where_a_thread_waits():
    release = threading.Event()
    thread = threading.Thread(target=blocked_in_here, args=(release,))
    thread.start()
    try:
        time.sleep(0.1)
        frames = thread_frames(dump_all_stacks(), thread.ident)
    finally:
        release.set()
        thread.join()
    assert frames[0].function == "wait" and frames[0].file.endswith("threading.py")
    where = describe_where(frames)
    assert where.startswith("wait (") and ", from blocked_in_here (tests/test_watchdog.py:" in where


def test_describe_where_skips_torch_and_the_standard_library_for_the_caller():
    frames = [
        Frame("/v/lib/python3.11/site-packages/torch/distributed/distributed_c10d.py", 4287, "all_gather"),
        Frame("/v/lib/python3.11/site-packages/accelerate/utils/operations.py", 375, "gather"),
        Frame("/v/lib/python3.11/site-packages/trl/trainer/grpo_trainer.py", 1681, "_calculate_rewards"),
    ]
    assert describe_where(frames) == (
        "all_gather (torch/distributed/distributed_c10d.py:4287), from _calculate_rewards (trl/trainer/grpo_trainer.py:1681)"
    )
    assert describe_where([Frame("/home/me/reward.py", 9, "slow_reward")]) == "slow_reward (me/reward.py:9)"
    assert describe_where([]).startswith("no Python frame")


# ----------------------------------------------------------------------------- the allowance


def test_the_allowance_is_the_first_step_timeout_then_a_multiple_of_the_slowest_step(tmp_path):
    dog, clock, _ = watchdog(tmp_path, step_time_factor=10, min_timeout_s=60, first_step_timeout_s=900)
    assert dog.allowance() == 900  # nothing completed yet
    dog.step_begin(0)
    clock.now += 30
    dog.step_end(1, saving_or_evaluating=False)
    assert dog.slowest_step == 30 and dog.allowance() == 300  # 10 x 30 s
    dog.step_begin(1)
    clock.now += 2
    dog.step_end(2, saving_or_evaluating=True)
    assert dog.allowance() == 900, "a checkpoint or an evaluation gets the long allowance"
    dog.step_begin(2)
    assert dog.allowance() == 300, "the slowest step so far still counts"
    fast, fast_clock, _ = watchdog(tmp_path, step_time_factor=10, min_timeout_s=60)
    fast.step_begin(0)
    fast_clock.now += 1
    fast.step_end(1, saving_or_evaluating=False)
    assert fast.allowance() == 60, "never shorter than min_timeout_s"
    fixed, fixed_clock, _ = watchdog(tmp_path, timeout_s=42)
    fixed.step_begin(0)
    fixed_clock.now += 5
    fixed.step_end(1, saving_or_evaluating=False)
    assert fixed.allowance() == 42


def test_it_fires_only_when_the_allowance_has_passed_and_then_dumps_records_and_exits_4(tmp_path):
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"step": 1, "reward": 0.5, "step_time": 1.0}) + "\n")
    dog, clock, exits = watchdog(tmp_path, step_time_factor=3, min_timeout_s=5)
    dog.step_begin(0)
    clock.now += 2
    dog.step_end(1, saving_or_evaluating=False)
    dog.step_begin(1)
    clock.now += 4.9  # allowance max(5, 3 x 2) = 6 s
    assert not dog.check() and exits == []
    clock.now += 1.2
    assert dog.check() and exits == [4]
    text = stack_file(tmp_path, 0).read_text()
    assert text.startswith("grpokit hang watchdog: rank 0 of 1") and "no progress for 6 s (allowance 6 s), in step 2" in text
    assert read_where(stack_file(tmp_path, 0)) and "Current thread 0x" in text, "every thread's stack follows"
    [event] = read_health_events(tmp_path / "health.jsonl")
    assert (event.check, event.status, event.step, event.exit_code) == ("hang", "tripped", 1, 4)
    assert "3 x the slowest step, 2.0 s, at least 5 s" in event.message and "rank 0 was in " in event.message
    assert 'data-check="hang" data-status="tripped"' in (tmp_path / "report.html").read_text(), "the report says so"


def test_warn_dumps_and_keeps_waiting(tmp_path):
    dog, clock, exits = watchdog(tmp_path, action="warn", timeout_s=10, first_step_timeout_s=10)
    clock.now += 11
    assert dog.check() and exits == []
    assert not dog.check(), "armed again: the next warning is one allowance later"
    assert [event.status for event in read_health_events(tmp_path / "health.jsonl")] == ["warned"]


def test_rank_0_says_where_every_rank_was(tmp_path):
    peer = stack_file(tmp_path, 1)
    peer.parent.mkdir(parents=True)
    peer.write_text("grpokit hang watchdog: rank 1 of 2\nno progress\nwhere: slow_reward (me/reward.py:9)\n\n")
    dog, clock, exits = watchdog(tmp_path, timeout_s=1, first_step_timeout_s=1)
    dog.world_size = 3  # rank 2 never writes its file (another machine, or it died)
    clock.now += 2
    dog.check()
    [event] = read_health_events(tmp_path / "health.jsonl")
    assert "rank 1 was in slow_reward (me/reward.py:9)" in event.message
    assert "rank 2 was in an unknown place (no stack file here" in event.message and exits == [4]


def test_rank_0_fires_when_a_peer_has_dumped_and_a_peer_waits_for_rank_0_before_it_exits(tmp_path, monkeypatch):
    monkeypatch.setattr("grpokit.trainer.watchdog.REPORT_GRACE_S", 1.0)
    rank0, _, _ = watchdog(tmp_path, timeout_s=600, first_step_timeout_s=600)
    rank0.world_size = 2
    assert not rank0.peer_fired()
    peer, peer_clock, peer_exits = watchdog(tmp_path, timeout_s=1, first_step_timeout_s=1)
    peer.rank, peer.world_size, peer.peer_wait_s = 1, 2, 0.5
    peer_clock.now += 2
    started = time.monotonic()
    peer.check()  # rank 1 dumps, then waits (here: up to 1.5 s) for rank 0's report; none comes
    assert peer_exits == [4] and time.monotonic() - started >= 1.5
    assert rank0.peer_fired(), "rank 1's fresh stack file: rank 0 waits on it too"


def test_outside_the_training_loop_nothing_hangs(tmp_path):
    exits: list[int] = []
    dog = HangWatchdog(HangOptions(timeout_s=1, first_step_timeout_s=1), tmp_path, exit_process=exits.append)
    dog.fire()  # the main thread is pytest's, not transformers' Trainer: training has ended
    assert exits == [] and not stack_file(tmp_path, 0).exists()


def test_the_thread_fires_on_its_own_and_a_new_training_stops_an_old_watchdog(tmp_path):
    fired: list[int] = []
    options = HangOptions(timeout_s=0.3, first_step_timeout_s=0.3)
    old = HangWatchdog(options, tmp_path / "old", exit_process=fired.append, in_training=lambda frames: True)
    old.start()
    new = HangWatchdog(HangOptions(timeout_s=60, first_step_timeout_s=60), tmp_path / "new", exit_process=fired.append)
    new.start()  # a second training in this process: the first one's watchdog must not fire into it
    time.sleep(1.0)
    assert fired == [] and not (tmp_path / "old" / "hang_stacks").exists()
    new.stop()
    dog = HangWatchdog(options, tmp_path, exit_process=fired.append, in_training=lambda frames: True)
    dog.start()
    deadline = time.monotonic() + 10
    while not fired and time.monotonic() < deadline:
        time.sleep(0.05)
    dog.stop()
    assert fired[:1] == [4]


# ----------------------------------------------------------------------------- stalled runs

STALL_REWARD = '''
import os
import time


def stall_at_step_2(prompts, completions, trainer_state=None, **kwargs):
    """Digits in the completion; at step 2 the rank named by STALL_RANK waits (a reward server that never answers)."""
    if trainer_state.global_step + 1 == 2 and os.environ.get("RANK", "0") == os.environ.get("STALL_RANK"):
        time.sleep(600)
    return [float(sum(ch.isdigit() for ch in completion)) for completion in completions]
'''


@pytest.fixture
def stall_config(tmp_path: Path, tiny_config: dict) -> Path:
    (tmp_path / "stall.py").write_text(STALL_REWARD, encoding="utf-8")
    config = {
        **tiny_config,
        "max_steps": 3,
        "gradient_checkpointing": False,
        "rewards": [{"name": "./stall.py:stall_at_step_2"}],
        # the default derived from the step time, scaled down: 3 x the slowest step, at least 2 s
        "health": {"hang": {"step_time_factor": 3, "min_timeout_s": 2, "first_step_timeout_s": 120}},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def run_stalled(config_path: Path, *extra: str, stall_rank: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "STALL_RANK": stall_rank}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID"):
        env.pop(name, None)
    command = [sys.executable, "-m", "grpokit", "train", str(config_path), *extra]
    return subprocess.run(command, cwd=config_path.parent, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False)


def one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text)


@pytest.mark.slow
def test_a_stalled_step_is_stopped_with_exit_4_and_its_checkpoint_resumes(stall_config, tiny_config, monkeypatch):
    started = time.monotonic()
    result = run_stalled(stall_config, stall_rank="0")
    assert result.returncode == 4, result.stderr[-4000:]
    assert time.monotonic() - started < 200, "stopped long before the 600 s stall ended"
    stderr = one_line(result.stderr)
    assert "hang: no training step completed in" in stderr and "in step 2" in stderr
    assert "rank 0 was in stall_at_step_2 (" in stderr and "Traceback" not in stderr
    out = Path(tiny_config["output_dir"])
    assert "stall_at_step_2" in stack_file(out, 0).read_text()
    [event] = read_health_events(out / "health.jsonl")
    assert (event.check, event.status, event.step, event.exit_code) == ("hang", "tripped", 1, 4)
    assert 'data-check="hang" data-status="tripped"' in (out / "report.html").read_text()
    checkpoint = out / "checkpoints" / "checkpoint-1"
    assert (checkpoint / "grpokit_complete.json").is_file() and not (out / "checkpoints" / "checkpoint-2").exists()

    from grpokit.trainer import train

    monkeypatch.delenv("STALL_RANK", raising=False)  # what a retry sees once the reward server answers again
    resumed = train(load_config(stall_config))
    assert resumed.resumed_from == checkpoint and resumed.global_step == 3


@pytest.mark.slow
def test_on_2_processes_every_rank_dumps_and_the_message_says_which_rank_was_where(stall_config, tiny_config):
    result = run_stalled(stall_config, "--nproc", "2", stall_rank="1")
    assert result.returncode == 4, result.stderr[-5000:]
    stderr = one_line(result.stderr)
    assert "rank 1 was in stall_at_step_2 (" in stderr, "the stalled rank, in its reward"
    assert re.search(r"rank 0 was in \w+ \(torch/distributed/[^)]*\), from _calculate_rewards \(trl/", stderr), "its peer, waiting for it"
    assert "stopped: hang:" in stderr, "the launcher repeats what stopped the job"
    out = Path(tiny_config["output_dir"])
    assert "stall_at_step_2" in stack_file(out, 1).read_text() and "all_gather" in stack_file(out, 0).read_text()
    assert (out / "checkpoints" / "checkpoint-1" / "grpokit_complete.json").is_file()
