"""`grpokit probe`: its figures against values worked out by hand, and against a direct computation on
the completions the built-in model really produced.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from grpokit.commands.probe_figures import StepShape, percentile, project_run, summarize_probe

# ----------------------------------------------------------------------------- figures, by hand


def test_figures_of_fixed_samples_worked_out_by_hand():
    figures = summarize_probe(
        rows=[7, 8, 9],
        prompts=["1+1=", "2+2=", "3+3="],
        totals=[[1.0, 1.0, 1.0, 1.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, None, 0.0]],
        completion_lengths=[[2, 2, 2, 2], [3, 5, 5, 1], [4, 4, 4, 4]],
        truncated=[[False] * 4, [False, True, True, False], [False] * 4],
        prompt_lengths=[4, 4, 6],
        pass_threshold=1.0,
        generation_seconds=2.0,
    )
    always, mixed, never = figures.prompts
    assert (always.verdict, always.mean_reward, always.pass_rate, always.spread) == ("always solved", 1.0, 1.0, 0.0)
    assert (mixed.verdict, mixed.mean_reward, mixed.pass_rate, mixed.spread) == ("informative", 0.25, 0.25, 1.0)
    assert (never.verdict, never.mean_reward, never.pass_rate, never.row) == ("never solved", 0.0, 0.0, 9)  # None skipped
    assert figures.zero_spread_share == pytest.approx(2 / 3)
    assert figures.verdict_counts == {"informative": 1, "always solved": 1, "never solved": 1, "unscored": 0}
    assert figures.mean_reward == pytest.approx((1.0 + 0.25 + 0.0) / 3)
    assert figures.truncated_share == pytest.approx(2 / 12)
    assert figures.completions == 12 and figures.generated_tokens == 38 and figures.tokens_per_second == 19.0
    # nearest rank over [1, 2, 2, 2, 2, 3, 4, 4, 4, 4, 5, 5]: p50 is the 6th value, p90 the 11th
    assert figures.completion_tokens == {"p50": 3, "p90": 5, "p99": 5, "max": 5}
    assert figures.prompt_tokens == {"p50": 4, "p90": 6, "p99": 6, "max": 6}


def test_an_unscored_prompt_and_a_ragged_probe():
    figures = summarize_probe(
        rows=[0], prompts=["x"], totals=[[None, None]], completion_lengths=[[1, 1]], truncated=[[False, False]],
        prompt_lengths=[1], pass_threshold=1.0, generation_seconds=0.0,
    )  # fmt: skip
    assert figures.prompts[0].verdict == "unscored" and figures.zero_spread_share == 1.0
    assert figures.tokens_per_second is None
    with pytest.raises(ValueError, match="same number of samples"):
        summarize_probe(
            rows=[0, 1], prompts=["a", "b"], totals=[[1.0, 0.0], [1.0]], completion_lengths=[[1, 1], [1]],
            truncated=[[False, False], [False]], prompt_lengths=[1, 1], pass_threshold=1.0, generation_seconds=1.0,
        )  # fmt: skip


@pytest.mark.parametrize("q", [1, 25, 50, 90, 99, 100])
def test_percentile_is_the_nearest_rank(q):
    values = [5, 1, 9, 3, 3, 7, 2]
    assert percentile(values, q) == np.percentile(values, q, method="inverted_cdf")


def test_projection_worked_out_by_hand():
    shape = StepShape(
        per_device_batch=4, gradient_accumulation_steps=2, steps_per_generation=2, num_iterations=1,
        extra_forwards_per_row=1, max_steps=0, num_train_epochs=2.0, generation_batch_prompts=2,
    )  # fmt: skip
    plain = project_run(
        shape, seconds_per_completion=0.5, micro_batch_train_seconds=1.0, micro_batch_forward_seconds=0.25,
        dataset_rows=11, zero_spread_share=0.5, dynamic_sampling_rounds=None,
    )  # fmt: skip
    # 8 completions x 0.5 s; 2 micro-batches x 1 s + 8 rows / 4 per micro-batch x 0.25 s
    assert (plain.generation_seconds_per_step, plain.training_seconds_per_step) == (4.0, 2.5)
    # 11 rows // 2 prompts = 5 generation batches x 2 dataloader batches = 10, / 2 accumulation = 5 steps, x 2 epochs
    assert plain.steps == 10 and plain.run_seconds == pytest.approx(65.0)
    sampled = project_run(
        shape, seconds_per_completion=0.5, micro_batch_train_seconds=1.0, micro_batch_forward_seconds=0.25,
        dataset_rows=11, zero_spread_share=0.5, dynamic_sampling_rounds=4,
    )  # fmt: skip
    assert sampled.generation_factor == 2.0 and sampled.generation_seconds_per_step == 8.0
    capped = project_run(
        shape, seconds_per_completion=0.5, micro_batch_train_seconds=1.0, micro_batch_forward_seconds=0.25,
        dataset_rows=11, zero_spread_share=0.9, dynamic_sampling_rounds=4,
    )  # fmt: skip
    assert capped.generation_factor == 4.0


def test_steps_per_epoch_match_trls_dataloader(tmp_path):
    import datasets
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from grpokit.commands.probe import step_shape
    from grpokit.model.builtin import resolve_model_path

    path = resolve_model_path("builtin:tiny")
    args = GRPOConfig(
        output_dir=str(tmp_path), use_cpu=True, bf16=False, per_device_train_batch_size=4, num_generations=2,
        gradient_accumulation_steps=3, num_train_epochs=1, max_completion_length=2, report_to="none",
    )  # fmt: skip
    trainer = GRPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(path),
        reward_funcs=[lambda completions, **kwargs: [0.0] * len(completions)],
        args=args,
        train_dataset=datasets.Dataset.from_dict({"prompt": [f"{i}+1=" for i in range(37)]}),
        processing_class=AutoTokenizer.from_pretrained(path),
    )
    batches = len(trainer.get_train_dataloader())
    assert step_shape(args).steps_for(37) == -(-batches // 3) == 6


# ----------------------------------------------------------------------------- on the built-in model


@pytest.fixture
def probe_config(tmp_path: Path) -> Path:
    """Addition problems, exact_match, 4 completions of at most 4 tokens: some are cut, some groups are flat."""
    from grpokit.commands.demo import write_training_problems

    data = write_training_problems(tmp_path / "train.jsonl", 12, seed=0)
    config = {
        "model_id": "builtin:tiny",
        "use_lora": False,
        "train_dataset_path": str(data),
        "output_dir": str(tmp_path / "out"),
        "rewards": [{"name": "exact_match"}],
        "max_steps": 30,
        "per_device_train_batch_size": 8,
        "num_generations": 4,
        "max_completion_length": 3,
        "temperature": 1.0,
        "seed": 0,
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


@pytest.mark.slow
def test_the_probe_on_the_built_in_model_matches_a_direct_computation(probe_config: Path):
    from grpokit.commands.probe import ProbeOptions, run_probe
    from grpokit.config import load_config
    from grpokit.model.loading import load_tokenizer
    from grpokit.tasks import addition

    config = load_config(probe_config)
    filtered = probe_config.parent / "filtered.jsonl"
    report = run_probe(config, ProbeOptions(rows=10, write_filtered=filtered))
    samples = report.samples
    source = [json.loads(line) for line in Path(config.options.train_dataset_path).read_text().splitlines()]
    assert len(samples.completions) == 10 and all(len(per_row) == 4 for per_row in samples.completions)

    # rewards, pass rates and verdicts, recomputed from the completions with the task's own checker
    flat_rows = set()
    for figure, row, completions in zip(report.figures.prompts, samples.rows, samples.completions):
        correct = [float(addition.is_correct(text, source[row["grpokit_row"]]["answer"])) for text in completions]
        assert figure.row == row["grpokit_row"] and figure.totals == correct
        assert figure.mean_reward == pytest.approx(sum(correct) / 4) and figure.pass_rate == pytest.approx(sum(correct) / 4)
        if len(set(correct)) == 1:
            flat_rows.add(figure.row)
            assert figure.verdict == ("always solved" if correct[0] == 1.0 else "never solved")
    assert report.figures.zero_spread_share == pytest.approx(len(flat_rows) / 10)

    # lengths, cut completions and speed, from the token ids
    tokenizer = load_tokenizer(config.options)
    ids = [completion_ids for per_row in samples.completion_ids for completion_ids in per_row]
    lengths = [len(completion_ids) for completion_ids in ids]
    cut = [len(c) == 3 and c[-1] != tokenizer.eos_token_id for c in ids]
    assert report.figures.truncated_share == pytest.approx(sum(cut) / 40)
    assert report.figures.completion_tokens["p90"] == np.percentile(lengths, 90, method="inverted_cdf")
    prompt_lengths = [len(tokenizer(row["prompt"], add_special_tokens=False)["input_ids"]) for row in samples.rows]
    assert report.figures.prompt_tokens["max"] == max(prompt_lengths)
    assert report.figures.tokens_per_second == pytest.approx(sum(lengths) / samples.generation_seconds)
    assert report.projection.steps == 30 and report.projection.step_seconds > 0

    saved = json.loads(report.json_path.read_text())
    assert report.json_path == probe_config.parent / "out" / "probe.json"
    assert saved["zero_spread_share"] == report.figures.zero_spread_share and len(saved["prompts"]) == 10
    # the filtered data: the source rows, without the probed flat ones; the 2 rows not probed are kept
    written = [json.loads(line) for line in filtered.read_text().splitlines()]
    assert written == [row for index, row in enumerate(source) if index not in flat_rows]
    assert report.filtered_rows == 12 - len(flat_rows)


@pytest.mark.slow
def test_probe_command_prints_the_figures_and_validate_prints_the_projection(probe_config: Path, tmp_path: Path):
    from grpokit.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["probe", str(probe_config), "--rows", "4", "--output", str(tmp_path / "p.json")])
    assert result.exit_code == 0, result.output
    assert "zero-spread groups" in result.output and "projected step" in result.output
    lines = result.output.strip().splitlines()
    projection = next(i for i, line in enumerate(lines) if line.startswith("probe: 4 prompts x 4 samples"))
    assert all(line.startswith("next step: ") for line in lines[projection + 1 :]), "the projection, then the next steps"
    assert json.loads((tmp_path / "p.json").read_text())["samples_per_prompt"] == 4

    validated = runner.invoke(app, ["validate", str(probe_config), "--probe"])
    assert validated.exit_code == 0, validated.output
    assert "probe: 12 prompts x 4 samples" in validated.output  # 16 asked, the data has 12
    assert not (probe_config.parent / "out" / "probe.json").exists()  # validate only prints


def test_probe_refuses_one_sample_per_prompt(probe_config: Path):
    from grpokit.cli import app

    result = CliRunner().invoke(app, ["probe", str(probe_config), "--samples", "1"])
    assert result.exit_code == 2
    assert "--samples at least 2" in result.output
