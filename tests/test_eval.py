"""`grpokit eval`: scoring checked against hand-computed values, then real generation with builtin:tiny."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from conftest import write_jsonl
from grpokit.cli import app
from grpokit.commands.evaluate import answer_matches, score_completions
from grpokit.rewards import RewardSpec, build_rewards
from grpokit.tasks import addition

ROWS = [
    {"prompt": "10+50=", "answer": "60", "grpokit_row": 0},
    {"prompt": "11+51=", "answer": "62", "grpokit_row": 1},
    {"prompt": "12+52=", "answer": "64", "grpokit_row": 2},
]


def test_scores_of_fixed_completions_match_the_hand_computed_ones():
    reward_set = build_rewards([RewardSpec(name="exact_match"), RewardSpec(name="length", target_length=2, weight=0.5)])
    completions = [["60", "6"], ["62", [{"role": "assistant", "content": "62"}]], ["x", "<answer>64</answer>"]]
    result = score_completions(reward_set, ROWS, completions, model="fixed", split="test")
    # exact_match: 1, 0 | 1, 1 | 0, 0 (the tags are part of the text)            -> 3/6
    # length (target 2 chars): 1, 0.5 | 1, 1 | 0.5, 0 (19 chars: 1 - 17/2 < 0)    -> 4/6
    # total = exact + 0.5 x length: 1.5, 0.25 | 1.5, 1.5 | 0.25, 0              -> 5/6
    # accuracy: 60 yes, 6 no | yes, yes | x no, <answer>64</answer> yes           -> 4/6; pass@2: 3/3
    assert result.reward_means == pytest.approx({"exact_match": 0.5, "length": 4 / 6})
    assert result.total_mean == pytest.approx(5 / 6)
    assert result.accuracy == pytest.approx(4 / 6)
    assert result.pass_at_k == 1.0
    assert (result.num_rows, result.num_samples, result.num_completions) == (3, 2, 6)
    assert [s["correct"] for s in result.samples] == [True, False, True, True, False, True]
    assert result.samples[3]["row"] == 1 and result.samples[3]["sample"] == 1
    assert result.summary()["pass@2"] == 1.0


def test_without_a_reference_column_there_is_no_accuracy():
    reward_set = build_rewards([RewardSpec(name="length", target_length=2)])
    rows = [{"prompt": "p", "grpokit_row": 0}]
    result = score_completions(reward_set, rows, [[""]])
    assert result.reward_means == {"length": 0.0}
    assert result.accuracy is None and result.pass_at_k is None and result.reference_column is None


@pytest.mark.parametrize(
    ("text", "reference", "expected"),
    [
        ("46", "46", True),
        ("46", 46, True),
        ("so 45, no: 46", "46", True),  # the last number
        ("45", "46", False),
        ("", "46", False),
        ("<think>4+2</think><answer>46</answer> (47?)", "46", True),  # the answer block wins
        ("<answer> Paris </answer>", "paris", True),
        ("Pâris", "pâris", True),
        ("Lyon", "Paris", False),
    ],
)
def test_answer_matches(text, reference, expected):
    assert answer_matches(text, reference) is expected


@pytest.fixture
def eval_config(tmp_path: Path) -> Path:
    problems = addition.heldout_problems(6)
    write_jsonl(tmp_path / "test.jsonl", [{"prompt": p.prompt, "answer": p.answer} for p in problems])
    write_jsonl(tmp_path / "train.jsonl", [{"prompt": "1+1=", "answer": "2"}])
    config = {
        "model_id": "builtin:tiny",
        "train_dataset_path": str(tmp_path / "train.jsonl"),
        "test_dataset_path": str(tmp_path / "test.jsonl"),
        "output_dir": str(tmp_path / "out"),
        "rewards": ["exact_match", {"name": "length", "target_length": 3, "weight": 0.5}],
        "max_completion_length": 5,
        "num_generations": 2,
        "per_device_train_batch_size": 2,
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.slow
def test_eval_builtin_tiny_end_to_end(eval_config: Path, tmp_path: Path):
    out = tmp_path / "eval"
    result = CliRunner().invoke(app, ["eval", str(eval_config), "--model", "builtin:tiny", "--output", str(out)])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "eval.json").read_text())
    samples = [json.loads(line) for line in (out / "eval_samples.jsonl").read_text().splitlines()]
    assert (summary["num_rows"], summary["num_samples"], summary["num_completions"]) == (6, 1, 6)
    # eval decodes in left-padded batches; the expectation is greedy decoding written out, one unpadded prompt at a time.
    problems = addition.heldout_problems(6)
    assert len({len(p.prompt) for p in problems}) > 1, "prompts of different lengths, so the batch is padded"
    model, tokenizer = _tiny()
    expected = [_greedy_one_prompt(model, tokenizer, p.prompt, max_new_tokens=5) for p in problems]
    assert [s["completion"] for s in samples] == expected
    assert summary["accuracy"] == pytest.approx(sum(answer_matches(c, p.answer) for c, p in zip(expected, problems)) / 6)
    # The summary is the mean of the per-sample scores written next to it.
    exact = [s["scores"]["exact_match"] for s in samples]
    assert summary["reward_means"]["exact_match"] == pytest.approx(sum(exact) / len(exact))
    assert summary["total_mean"] == pytest.approx(sum(s["total"] for s in samples) / len(samples))
    assert "accuracy (answer)" in result.output


@pytest.mark.slow
def test_eval_of_a_saved_adapter_compared_with_its_base(eval_config: Path, tmp_path: Path):
    from peft import LoraConfig, get_peft_model

    model, tokenizer = _tiny()
    adapter_dir = tmp_path / "adapter"
    # A fresh LoRA adapter (B = 0) leaves the model unchanged, so every difference must be 0.
    get_peft_model(model, LoraConfig(r=2, target_modules="all-linear", task_type="CAUSAL_LM")).save_pretrained(adapter_dir)
    tokenizer.save_pretrained(adapter_dir)
    (adapter_dir / "metrics.jsonl").write_text(json.dumps({"step": 1, "reward": 0.5}) + "\n")  # as a run's output_dir holds it
    args = ["eval", str(eval_config), "--model", str(adapter_dir), "--compare", "builtin:tiny"]
    result = CliRunner().invoke(app, [*args, "--num-samples", "2", "--rows", "3", "--set", "seed=3"])
    assert result.exit_code == 0, result.output
    summary = json.loads((adapter_dir / "eval" / "eval.json").read_text())  # default: <model>/eval/
    assert summary["num_completions"] == 6 and "pass@2" in summary
    assert summary["compare"]["base"]["model"] == "builtin:tiny"
    assert all(value == pytest.approx(0.0) for value in summary["compare"]["difference"].values())
    html = (adapter_dir / "report.html").read_text(encoding="utf-8")  # the run's report now shows the results
    assert "report: " in result.output and '<table id="evaluation">' in html and "<th>base (builtin:tiny)</th>" in html


def test_eval_without_a_test_split_says_how_to_fix_it(eval_config: Path):
    config = yaml.safe_load(eval_config.read_text())
    del config["test_dataset_path"]
    eval_config.write_text(yaml.safe_dump(config))
    result = CliRunner().invoke(app, ["eval", str(eval_config), "--model", "builtin:tiny"])
    assert result.exit_code == 2
    assert "--split train" in result.output


def _greedy_one_prompt(model, tokenizer, prompt: str, *, max_new_tokens: int) -> str:
    """Greedy decoding by hand: no padding, no `generate`; the argmax of the last position's logits, until EOS."""
    import torch

    ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]  # [1, P]
    new: list[int] = []
    with torch.no_grad():
        for _ in range(max_new_tokens):
            next_id = int(model(input_ids=ids).logits[0, -1].argmax())
            new.append(next_id)
            if next_id == tokenizer.eos_token_id:
                break
            ids = torch.cat([ids, torch.tensor([[next_id]])], dim=1)  # [1, P + len(new)]
    return tokenizer.decode(new, skip_special_tokens=True)


def _tiny():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from grpokit.model.builtin import resolve_model_path

    path = resolve_model_path("builtin:tiny")
    return AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)
