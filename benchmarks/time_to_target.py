"""Hyperparameters compared: grpokit's demo settings, TRL's GRPOConfig defaults and the AWS sample's, all on TRL's loop.

    .venv/bin/python benchmarks/time_to_target.py            # 5 seeds x 3 settings: about 15 minutes on 2 idle cores
    .venv/bin/python benchmarks/time_to_target.py --quick    # smoke run (2 seeds, 4 steps) into results/quick/

This compares hyperparameters, not tools: every run trains with TRL's `GRPOTrainer` (the demo settings
through `grpokit.trainer.train()`, which wraps it). The tool against plain TRL at the same settings is
`overhead.py` and `data_efficiency.py`. For each seed, three runs in one process, the order rotating
from seed to seed, each from the same built-in model (`builtin:tiny`), on the same training problems
(written with the seed), with the same reward (grpokit's `exact_match`), the same seed, the same step
budget (the demo's max_steps) and the same held-out problems:

1. `grpokit demo config`: `grpokit.trainer.train()` with examples/demo.yaml's settings.
2. `TRL defaults`: `trl.GRPOTrainer` with `trl.GRPOConfig()`'s defaults (learning rate 1e-6, linear
   decay, 8 completions per step, max_completion_length 512, ...).
3. `AWS sample hyperparameters`: `trl.GRPOTrainer` with the AWS GRPO sample's args.yaml: learning rate
   2e-4, temperature 0.2, top_p 0.9, LoRA r=8 / alpha=16 / dropout 0.1 on all linear layers, batch 4
   with 2 accumulation steps, max_completion_length 256.

Every run: `bf16=False` (no GPU), `logging_steps=1` (the evaluation hook runs at logging time; logging
does not change learning), `report_to="none"`, no checkpoints. The AWS sample's
`gradient_checkpointing` is left off: it saves memory and only slows a step. A held-out greedy
evaluation every `--eval-every` steps measures accuracy; its time is not counted. A run stops at the
first evaluation that reaches the target, or at the step budget.

Reported per setting: steps and training CPU seconds to the target, medians and min-max over the
seeds that reached it; against the demo settings, per seed the other setting's figure over the demo
settings' with the same seed (a bound when either never reached the target: `benchlib.censored_ratio`),
then the median over seeds and the min-max.

Writes benchmarks/results/time_to_target.json and time_to_target.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import transformers

from benchlib import (
    bounds_spread_text,
    censored_ratio,
    conditions_text,
    invocation,
    load_average,
    machine,
    paired_bounds,
)
from grpokit.commands.demo import DEMO_SETTINGS, HeldoutAccuracyCallback, write_training_problems
from grpokit.model.builtin import resolve_model_path
from grpokit.rewards import build_reward
from grpokit.tasks import addition
from heldout_meter import Meter, measured_callbacks

RESULTS_DIR = Path(__file__).resolve().parent / "results"
TRAIN_PROBLEMS = 2000

AWS_SAMPLE_ARGS = {  # examples/aws_sample/args.yaml, the keys that shape learning
    "learning_rate": 2e-4,
    "temperature": 0.2,
    "top_p": 0.9,
    "per_device_train_batch_size": 4,
    "gradient_accumulation_steps": 2,
    "max_completion_length": 256,
}
AWS_SAMPLE_LORA = {"r": 8, "lora_alpha": 16, "lora_dropout": 0.1, "target_modules": "all-linear"}
CONFIGURATIONS = ("grpokit demo config", "TRL defaults", "AWS sample hyperparameters")
DESCRIPTIONS = {
    "grpokit demo config": "examples/demo.yaml: full fine-tuning, lr 1e-4 linear decay, 8 prompts x 8 completions, "
    "max 5 new tokens, temperature 1.0",
    "TRL defaults": "trl.GRPOConfig() defaults: lr 1e-6 linear decay, 1 prompt x 8 completions, max 512 new tokens",
    "AWS sample hyperparameters": "lr 2e-4 linear decay, temperature 0.2, top_p 0.9, LoRA r8/a16/d0.1, "
    "batch 4 x 2 accumulation (1 prompt x 8 completions), max 256 new tokens",
}


@dataclass
class Run:
    configuration: str
    seed: int
    reached: bool
    steps_to_target: int | None
    cpu_seconds_to_target: float | None  # this process's training CPU seconds, held-out evaluations excluded
    seconds_to_target: float | None  # wall-clock training seconds, held-out evaluations excluded
    accuracy_before: float
    accuracy_final: float
    steps_run: int
    cpu_seconds_run: float  # training CPU seconds of the whole run (to its last evaluation)
    train_seconds: float  # the whole run's wall-clock training seconds, evaluations excluded
    curve: list[list[float]]  # [step, accuracy, train seconds, train CPU seconds] per evaluation


def run_grpokit_demo_config(args: argparse.Namespace, workdir: Path, seed: int, heldout, callbacks) -> None:
    from grpokit.commands.demo import load_demo_config
    from grpokit.trainer import train

    output_dir = workdir / "grpokit"
    write_training_problems(output_dir / "data/train.jsonl", TRAIN_PROBLEMS, seed=seed)
    overrides = [f"max_steps={args.max_steps}", f"seed={seed}", "report_to=none", "save_strategy='no'"]
    train(load_demo_config(output_dir, overrides=overrides), extra_callbacks=callbacks)


def run_plain_trl(args: argparse.Namespace, workdir: Path, seed: int, grpo_args: dict, peft_config, callbacks) -> None:
    from datasets import load_dataset
    from trl import GRPOConfig, GRPOTrainer

    data_file = write_training_problems(workdir / "train.jsonl", TRAIN_PROBLEMS, seed=seed)
    dataset = load_dataset("json", data_files=str(data_file), split="train", cache_dir=str(workdir / "hf-cache"))
    config = GRPOConfig(
        output_dir=str(workdir / "checkpoints"), max_steps=args.max_steps, bf16=False, use_cpu=True, logging_steps=1,
        seed=seed, report_to="none", save_strategy="no", **grpo_args,
    )  # fmt: skip
    trainer = GRPOTrainer(
        model=resolve_model_path("builtin:tiny"),
        reward_funcs=build_reward("exact_match"),  # the demo config's reward
        args=config,
        train_dataset=dataset,
        peft_config=peft_config,
        callbacks=callbacks,
    )
    trainer.train()


def run_configuration(name: str, seed: int, workdir: Path, args: argparse.Namespace) -> Run:
    from peft import LoraConfig

    heldout = HeldoutAccuracyCallback(addition.heldout_problems(args.heldout), every_steps=args.eval_every,
                                      stop_at_accuracy=args.target)  # fmt: skip
    meter, callbacks = measured_callbacks(heldout)
    started = time.perf_counter()
    if name == "grpokit demo config":
        run_grpokit_demo_config(args, workdir, seed, heldout, callbacks)
    elif name == "TRL defaults":
        run_plain_trl(args, workdir, seed, {}, None, callbacks)
    else:
        aws_lora = LoraConfig(task_type="CAUSAL_LM", **AWS_SAMPLE_LORA)
        run_plain_trl(args, workdir, seed, AWS_SAMPLE_ARGS, aws_lora, callbacks)
    return summarize_run(name, seed, heldout, meter, time.perf_counter() - started - heldout.eval_seconds, args.target)


def summarize_run(name: str, seed: int, heldout: HeldoutAccuracyCallback, meter: Meter, seconds: float, target: float) -> Run:
    reached = next((entry for entry in heldout.history if entry.accuracy >= target), None)
    last = heldout.history[-1].step
    return Run(
        configuration=name,
        seed=seed,
        reached=reached is not None,
        steps_to_target=reached.step if reached else None,
        cpu_seconds_to_target=round(meter.cpu[reached.step], 2) if reached else None,
        seconds_to_target=round(reached.train_seconds, 2) if reached else None,
        accuracy_before=heldout.history[0].accuracy,
        accuracy_final=heldout.history[-1].accuracy,
        steps_run=last,
        cpu_seconds_run=round(meter.cpu.get(last, max(meter.cpu.values())), 2),
        train_seconds=round(seconds, 2),
        curve=[[e.step, e.accuracy, round(e.train_seconds, 2), round(meter.cpu.get(e.step, 0.0), 2)] for e in heldout.history],
    )


def summarize(runs: list[dict]) -> dict:
    """Per configuration: each seed's steps and CPU seconds to the target over the demo settings' with that seed."""
    reference = {r["seed"]: r for r in runs if r["configuration"] == CONFIGURATIONS[0]}

    def versus(run: dict, measure: str) -> list:
        base = reference[run["seed"]]
        return censored_ratio(run[f"{measure}_to_target"], run[f"{measure}_run"], base[f"{measure}_to_target"], base[f"{measure}_run"])

    summary = {}
    for name in CONFIGURATIONS:
        group = [r for r in runs if r["configuration"] == name and r["seed"] in reference]
        summary[name] = {
            "seeds": [r["seed"] for r in group],
            "vs_demo_config": {measure: paired_bounds([versus(r, measure) for r in group]) for measure in ("steps", "cpu_seconds")},
        }
    return summary


def _median_and_range(values: list[float], form: str) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return form.format(values[0])
    return f"{form.format(statistics.median(values))} ({form.format(min(values))}-{form.format(max(values))})"


def markdown_table(payload: dict) -> str:
    runs, arguments, summary = payload["runs"], payload["arguments"], payload["summary"]
    before = [r["accuracy_before"] for r in runs]
    lines = [
        ("**Hyperparameters compared, not tools**: every run is TRL's `GRPOTrainer` loop; only the settings differ "
         "(the tool against plain TRL at equal settings: overhead.md, data_efficiency.md). "
         f"Steps and training CPU seconds for GRPO to raise `builtin:tiny`'s greedy accuracy on {arguments['heldout']} "
         f"held-out 2-digit additions from {_median_and_range(before, '{:.2f}')} to {arguments['target']}; budget "
         f"{arguments['max_steps']} steps; seeds {arguments['seeds']}, the order of the settings rotating from seed to "
         "seed. Per-setting columns: median (min-max) over the seeds that reached the target. \"vs demo settings\": per "
         "seed, the setting's figure over the demo settings' with the same seed; median over seeds (min to max)."),
        "",
        "| settings | reached | steps to target | CPU s to target | accuracy at end | vs demo settings: steps | CPU time |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for name in CONFIGURATIONS:
        group = [r for r in runs if r["configuration"] == name]
        versus = summary[name]["vs_demo_config"]
        ratios = ["-", "-"] if name == CONFIGURATIONS[0] else [bounds_spread_text(versus[m]) for m in ("steps", "cpu_seconds")]
        lines.append(
            f"| {name} | {sum(r['reached'] for r in group)}/{len(group)} "
            f"| {_median_and_range([r['steps_to_target'] for r in group if r['reached']], '{:.0f}')} "
            f"| {_median_and_range([r['cpu_seconds_to_target'] for r in group if r['reached']], '{:.1f}')} "
            f"| {_median_and_range([r['accuracy_final'] for r in group], '{:.3f}')} | {ratios[0]} | {ratios[1]} |"
        )
    lines += [
        "",
        "Settings: " + "; ".join(f"{name}: {DESCRIPTIONS[name]}" for name in CONFIGURATIONS) + ".",
        "",
        ("A run that never reached the target bounds its seed's ratio with its whole run (\"> N x\": the setting never "
         f"got there in {arguments['max_steps']} steps). CPU seconds are this process's CPU time spent training (held-out "
         f"evaluations every {arguments['eval_every']} steps excluded, so \"to target\" is resolved to "
         f"{arguments['eval_every']} steps). {conditions_text(payload)}. Reproduce: `{payload['command']}`."),
        "",
    ]
    return "\n".join(lines)


def write_results(payload: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "time_to_target.json").write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    (out / "time_to_target.md").write_text(markdown_table(payload), encoding="utf-8")
    print(markdown_table(payload))


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="at least 5 for the README")
    parser.add_argument("--target", type=float, default=0.75, help="held-out accuracy to reach (default 0.75)")
    parser.add_argument("--max-steps", type=int, default=DEMO_SETTINGS["max_steps"], help="step budget per run")
    parser.add_argument("--eval-every", type=int, default=5, help="held-out evaluation every N steps")
    parser.add_argument("--heldout", type=int, default=200, help="held-out problems (default 200)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: steadier on a shared machine)")
    parser.add_argument("--quick", action="store_true", help="smoke run: seeds 0 1, 4 steps, 20 held-out problems, into results/quick/")
    parser.add_argument("--out", type=Path, default=None, help="results folder (default benchmarks/results/)")
    parser.add_argument("--resummarize", type=Path, help="recompute the summary and table of an existing results file from its runs")
    args = parser.parse_args(argv)
    if args.resummarize:
        payload = json.loads(args.resummarize.read_text(encoding="utf-8"))
        payload["summary"] = summarize(payload["runs"])
        return write_results(payload, args.out or args.resummarize.parent)
    if args.quick:
        args.seeds, args.max_steps, args.eval_every, args.heldout = [0, 1], 4, 2, 20
        args.out = args.out or RESULTS_DIR / "quick"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()
    load_before = load_average()
    runs: list[Run] = []
    workroot = Path(tempfile.mkdtemp(prefix="grpokit-ttt-"))
    try:
        for index, seed in enumerate(args.seeds):
            order = CONFIGURATIONS[index % 3 :] + CONFIGURATIONS[: index % 3]  # rotate who runs first
            for name in order:
                print(f"== seed {seed}: {name}", flush=True)
                workdir = workroot / f"{seed}-{CONFIGURATIONS.index(name)}"
                runs.append(run_configuration(name, seed, workdir, args))
                print(json.dumps(asdict(runs[-1]))[:300], flush=True)
                shutil.rmtree(workdir, ignore_errors=True)
    finally:
        shutil.rmtree(workroot, ignore_errors=True)
    run_dicts = [asdict(run) for run in runs]
    payload = {
        "benchmark": "time_to_target",
        "compares": "hyperparameters, not tools",
        **invocation("time_to_target.py", argv, vars(args)),
        "machine": {**machine(), "torch_threads": torch.get_num_threads()},
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "summary": summarize(run_dicts),
        "runs": run_dicts,
    }
    write_results(payload, args.out or RESULTS_DIR)


if __name__ == "__main__":
    main()
