"""The parts behind the fault suite, one at a time: prompt limits, checkpoint checks, the run lock,
filesystem faults, URL credentials, failure counts. (tests/test_faults.py drives them end to end.)"""

from __future__ import annotations

import errno
import json
import logging
import os
import struct
from pathlib import Path

import datasets
import pytest

from grpokit.data import prompt_lengths
from grpokit.data.prompt_lengths import bound_prompt_lengths, prompt_token_limit
from grpokit.errors import DataError
from grpokit.outputs.checkpoint_checks import checkpoint_problem, manifest
from grpokit.outputs.checkpoints import last_complete_checkpoint, resume_checkpoint, write_complete_marker
from grpokit.outputs.fs_faults import FilesystemError, check_writable_directory, filesystem_fault
from grpokit.outputs.run_lock import HELD_BY_LAUNCHER_ENV, RunLockedError, acquire_run_lock, run_lock
from grpokit.rewards.http import split_url_credentials
from grpokit.secrets import mask_text, remember_secrets_in
from grpokit.trainer.reward_callbacks import FailureCountsAcrossRanks, summed_over_ranks


class CharTokenizer:
    """One token per character, plus one BOS; a chat template of `<role>content` per message."""

    def __call__(self, text, add_special_tokens=True):
        texts = [text] if isinstance(text, str) else text
        ids = [([0] if add_special_tokens else []) + [ord(c) for c in t] for t in texts]
        return {"input_ids": ids[0] if isinstance(text, str) else ids}

    def apply_chat_template(self, conversation, add_generation_prompt=True, tokenize=True, return_dict=True, **kwargs):
        text = "".join(f"<{m['role']}>{m['content']}" for m in conversation) + ("<assistant>" if add_generation_prompt else "")
        return {"input_ids": [ord(c) for c in text]}

    def decode(self, ids, skip_special_tokens=False):
        return "".join(chr(i) for i in ids if i)


def dataset_of(prompts: list) -> datasets.Dataset:
    return datasets.Dataset.from_dict({"prompt": prompts, "grpokit_row": list(range(10, 10 + len(prompts)))})


# ----------------------------------------------------------------------------- prompt lengths


def test_percentiles_and_the_longest_row_worked_by_hand():
    prompts = ["a" * n for n in (1, 2, 3, 4, 5, 6, 7, 8, 9, 99)]  # tokens: n + 1 (BOS)
    _, lengths = bound_prompt_lengths(dataset_of(prompts), CharTokenizer(), limit=None, truncate=False, source="s")
    assert (lengths.p50, lengths.p90, lengths.p99, lengths.longest, lengths.longest_row) == (6, 10, 100, 100, 19)
    assert "p50 6, p90 10, p99 100, max 100 (row 19), no limit" in lengths.describe("train")


def test_prompts_over_the_limit_are_an_error_with_their_count_and_longest_row():
    with pytest.raises(DataError) as caught:
        bound_prompt_lengths(dataset_of(["ab", "x" * 50, "y" * 80]), CharTokenizer(), limit=20, truncate=False, source="train")
    assert "2 of 3 prompts are longer than the prompt limit of 20 tokens (longest: row 12, 81 tokens)" in caught.value.what


def test_truncation_keeps_the_end_of_a_text_prompt():
    data, lengths = bound_prompt_lengths(
        dataset_of(["short", "0123456789" * 5 + "Q: 2+2="]), CharTokenizer(), limit=12, truncate=True, source="s"
    )
    assert data["prompt"][0] == "short" and data["prompt"][1].endswith("Q: 2+2=") and len(data["prompt"][1]) <= 11
    assert lengths.truncated == 1 and lengths.longest <= 12
    assert data["grpokit_row"] == [10, 11], "the other columns are kept"


def test_truncation_of_a_chat_prompt_keeps_the_system_message_and_the_question():
    chat = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "x" * 200 + " what is 2+2?"}]
    data, _ = bound_prompt_lengths(dataset_of([chat]), CharTokenizer(), limit=60, truncate=True, source="s")
    system, user = data["prompt"][0]
    assert system == {"role": "system", "content": "be brief"}
    assert user["content"].endswith("what is 2+2?") and len(CharTokenizer().apply_chat_template(data["prompt"][0])["input_ids"]) <= 60


def test_a_big_dataset_is_sampled_but_every_prompt_that_could_pass_the_limit_is_counted(monkeypatch):
    monkeypatch.setattr(prompt_lengths, "SAMPLE_ROWS", 5)
    prompts = ["ab"] * 1000
    prompts[437] = "z" * 500  # outside the sample of rows 0, 250, 500, 749, 999
    with pytest.raises(DataError, match="1 of 1,000 prompts are longer .* row 447"):
        bound_prompt_lengths(dataset_of(prompts), CharTokenizer(), limit=100, truncate=False, source="s")


@pytest.mark.parametrize(
    ("max_prompt_length", "completion", "context", "expected"),
    [(None, 512, 2048, 1536), (100, 512, 2048, 100), (None, 512, None, None), (64, 512, None, 64)],
)
def test_the_prompt_limit(max_prompt_length, completion, context, expected):
    assert prompt_token_limit(max_prompt_length, max_completion_length=completion, model_context=context, source="s") == expected


def test_a_limit_the_context_cannot_hold_is_an_error():
    with pytest.raises(DataError, match="no room for a prompt"):
        prompt_token_limit(None, max_completion_length=4096, model_context=2048, source="s")
    with pytest.raises(DataError, match="lower max_prompt_length to 1,536"):
        prompt_token_limit(2000, max_completion_length=512, model_context=2048, source="s")


# ----------------------------------------------------------------------------- checkpoint checks


def write_safetensors(path: Path, payload: bytes = b"\0" * 64) -> None:
    header = json.dumps({"w": {"dtype": "F32", "shape": [16], "data_offsets": [0, len(payload)]}}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header + payload)


def make_checkpoint(root: Path, step: int, *, marker: bool = True) -> Path:
    import torch

    checkpoint = root / f"checkpoint-{step}"
    checkpoint.mkdir(parents=True)
    write_safetensors(checkpoint / "adapter_model.safetensors")
    (checkpoint / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    torch.save({"state": step}, checkpoint / "optimizer.pt")
    if marker:
        write_complete_marker(checkpoint, step)
    return checkpoint


def test_a_whole_checkpoint_has_no_problem_and_its_marker_lists_every_file(tmp_path):
    checkpoint = make_checkpoint(tmp_path, 3)
    assert checkpoint_problem(checkpoint) is None
    assert set(manifest(checkpoint)["files"]) == {"adapter_model.safetensors", "trainer_state.json", "optimizer.pt"}


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (lambda c: (c / "adapter_model.safetensors").write_bytes((c / "adapter_model.safetensors").read_bytes()[:40]), "adapter_model.safetensors is 40 bytes"),
        (lambda c: (c / "optimizer.pt").unlink(), "optimizer.pt is missing"),
        (lambda c: (c / "trainer_state.json").write_text(json.dumps({"global_step": 9})), "trainer_state.json does not match the checksum"),
        (lambda c: (c / "grpokit_complete.json").write_text("{half"), "completion marker"),
    ],
)
def test_damage_after_the_marker_is_named(tmp_path, damage, problem):
    checkpoint = make_checkpoint(tmp_path, 3)
    damage(checkpoint)
    assert problem in checkpoint_problem(checkpoint)


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (lambda c: (c / "adapter_model.safetensors").write_bytes((c / "adapter_model.safetensors").read_bytes()[:-10]), "cut short"),
        (lambda c: (c / "optimizer.pt").write_bytes((c / "optimizer.pt").read_bytes()[:100]), "zip directory is missing"),
        (lambda c: (c / "trainer_state.json").write_text("{"), "not valid JSON"),
    ],
)
def test_damage_in_a_checkpoint_without_a_manifest_is_found_by_its_structure(tmp_path, damage, problem):
    checkpoint = make_checkpoint(tmp_path, 3, marker=False)
    damage(checkpoint)
    assert problem in checkpoint_problem(checkpoint)


def test_resume_sets_a_damaged_checkpoint_aside_and_takes_the_one_before(tmp_path, caplog):
    make_checkpoint(tmp_path, 1)
    newest = make_checkpoint(tmp_path, 2)
    (newest / "optimizer.pt").write_bytes(b"PK")
    with caplog.at_level(logging.WARNING, logger="grpokit.checkpoints"):
        assert resume_checkpoint("auto", tmp_path) == tmp_path / "checkpoint-1"
    assert "checkpoint-2 is damaged (optimizer.pt is 2 bytes" in caplog.text
    (moved,) = tmp_path.glob("damaged-*/checkpoint-2")
    assert (moved / "optimizer.pt").read_bytes() == b"PK", "set aside, not deleted"
    assert last_complete_checkpoint(tmp_path) == tmp_path / "checkpoint-1"


def test_other_ranks_skip_a_damaged_checkpoint_without_moving_it(tmp_path, monkeypatch):
    make_checkpoint(tmp_path, 1)
    (make_checkpoint(tmp_path, 2) / "optimizer.pt").write_bytes(b"PK")
    monkeypatch.setenv("RANK", "1")
    assert resume_checkpoint("auto", tmp_path) == tmp_path / "checkpoint-1"
    assert (tmp_path / "checkpoint-2").is_dir() and not list(tmp_path.glob("damaged-*"))


# ----------------------------------------------------------------------------- the run lock


def test_a_held_lock_refuses_a_second_holder_naming_the_first(tmp_path):
    lock = acquire_run_lock(tmp_path)
    with pytest.raises(RunLockedError) as caught:
        acquire_run_lock(tmp_path)
    assert f"output_dir {tmp_path} is in use by another run: process {os.getpid()}" in caught.value.what
    assert caught.value.exit_code == 2
    lock.release()
    assert not (tmp_path / ".grpokit-run.lock").exists()
    acquire_run_lock(tmp_path).release()


def test_a_lock_left_by_a_dead_process_is_taken_over_with_a_warning(tmp_path, caplog):
    (tmp_path / ".grpokit-run.lock").write_text(json.dumps({"pid": 999999, "host": "h", "started": 0, "command": "grpokit train"}))
    with caplog.at_level(logging.WARNING, logger="grpokit.outputs"):
        acquire_run_lock(tmp_path).release()
    assert "taking over" in caplog.text and "process 999999 on h" in caplog.text


def test_ranks_and_launched_processes_leave_the_lock_to_the_holder(tmp_path, monkeypatch):
    held = acquire_run_lock(tmp_path)
    lock_file = tmp_path / ".grpokit-run.lock"
    record = lock_file.read_bytes()

    def still_held_by_the_holder() -> None:
        assert lock_file.read_bytes() == record, "the holder's record is untouched"
        with pytest.raises(RunLockedError):  # the flock is still the holder's
            acquire_run_lock(tmp_path)

    monkeypatch.setenv("RANK", "1")
    with run_lock(tmp_path):
        still_held_by_the_holder()
    still_held_by_the_holder()  # leaving the block released nothing
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv(HELD_BY_LAUNCHER_ENV, str(tmp_path.resolve()))
    with run_lock(tmp_path):
        still_held_by_the_holder()
    still_held_by_the_holder()
    held.release()
    assert not lock_file.exists()
    monkeypatch.setenv(HELD_BY_LAUNCHER_ENV, str(tmp_path / "another-run"))  # a launcher holding another folder
    with run_lock(tmp_path), pytest.raises(RunLockedError):  # this rank 0 holds the lock itself
        acquire_run_lock(tmp_path)
    assert not lock_file.exists()


# ----------------------------------------------------------------------------- filesystem faults


@pytest.mark.parametrize(
    ("error", "cause", "exit_code"),
    [
        (OSError(errno.ENOSPC, "No space left on device", "/data/out/x"), "no space left on the device", 1),
        (OSError(errno.EROFS, "Read-only file system", "/data/out"), "read-only", 2),
        (OSError(errno.EDQUOT, "Disk quota exceeded", "/data/out"), "quota", 1),
        (RuntimeError("Error while serializing: IoError(Os { code: 28, kind: StorageFull })"), "no space left", 1),
    ],
)
def test_filesystem_faults_name_the_cause(error, cause, exit_code):
    fault = filesystem_fault(error, "/data/out")
    assert isinstance(fault, FilesystemError) and cause in fault.what and fault.exit_code == exit_code


def test_a_torch_write_failure_with_a_full_disk_is_called_a_full_disk(monkeypatch, tmp_path):
    from grpokit.outputs import fs_faults

    error = RuntimeError("[enforce fail at inline_container.cc:664] . PytorchStreamWriter failed writing file data/0: file write failed")
    monkeypatch.setattr(fs_faults, "_free_bytes", lambda path: 0)
    assert "no space left" in filesystem_fault(error, tmp_path).what
    monkeypatch.setattr(fs_faults, "_free_bytes", lambda path: 1 << 40)
    assert filesystem_fault(error, tmp_path) is None, "with room on the disk it is some other failure"


def test_other_errors_are_not_filesystem_faults():
    assert filesystem_fault(ValueError("bad value")) is None
    assert filesystem_fault(OSError(errno.ECONNREFUSED, "Connection refused")) is None


def test_a_file_in_the_way_is_named(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(FilesystemError, match=r"f is a file, not a directory"):
        check_writable_directory(tmp_path / "f" / "out")


# ----------------------------------------------------------------------------- URL credentials, failure counts


def test_url_credentials_become_basic_auth_and_are_masked_everywhere():
    url, header = split_url_credentials("https://alice:pa%24%24word@scorer.example:8443/score?x=1")
    assert url == "https://scorer.example:8443/score?x=1"
    assert header == "Basic YWxpY2U6cGEkJHdvcmQ="
    assert mask_text("token pa$$word leaked, header Basic YWxpY2U6cGEkJHdvcmQ=") == "token *** leaked, header ***"
    assert split_url_credentials("http://127.0.0.1:8000/score") == ("http://127.0.0.1:8000/score", None)


def test_a_config_url_password_is_masked_even_when_a_library_cuts_the_url_up():
    remember_secrets_in({"rewards": [{"name": "http", "url": "http://bob:hunter2x@10.0.0.1:81/s"}]})
    assert mask_text("nonnumeric port: 'hunter2x@10.0.0.1:81'") == "nonnumeric port: '***@10.0.0.1:81'"
    assert mask_text("https://ghp_0123456789@github.com/o/r") == "https://***@github.com/o/r"


def test_failure_counts_in_one_process_are_the_local_counts():
    counts = {"a": 2, "b": 0}
    assert summed_over_ranks(counts) == counts
    callback = FailureCountsAcrossRanks(lambda: dict(counts))
    assert callback() == counts
    counts["a"] = 5
    callback.on_log(None, None, None)
    assert callback() == {"a": 5, "b": 0}


def test_folders_a_failed_run_created_and_left_empty_are_removed(tmp_path):
    from grpokit.outputs.fs_faults import filesystem_faults

    out = tmp_path / "new" / "out"
    with pytest.raises(ValueError), filesystem_faults(out, out / "checkpoints"):
        assert (out / "checkpoints").is_dir()
        raise ValueError("the run failed before writing anything")
    assert not (tmp_path / "new").exists()
    existing = tmp_path / "existing"
    existing.mkdir()
    with pytest.raises(ValueError), filesystem_faults(existing, existing / "checkpoints"):
        (existing / "metrics.jsonl").write_text("{}\n")
        raise ValueError("failed after a first record")
    assert (existing / "metrics.jsonl").is_file() and not (existing / "checkpoints").exists()
