"""Data efficiency at equal settings: plain TRL against grpokit with dynamic sampling and on probe-filtered data.

    .venv/bin/python benchmarks/data_efficiency.py           # 5 seeds x 3 variants x 2 settings: about 40 minutes
    .venv/bin/python benchmarks/data_efficiency.py --quick   # smoke run (2 seeds, 4 steps) into results/quick/
    .venv/bin/python benchmarks/data_efficiency.py --resummarize benchmarks/results/data_efficiency.json

Every run starts from the built-in model (`builtin:tiny`), trains on the same 2,000 addition problems
(written with the run's seed, held-out pairs excluded) with the same reward (grpokit's `exact_match`,
a plain function TRL calls as it is), the same hyperparameters and the same seed, and is measured on
the same 200 held-out problems (greedy exact match, every `--eval-every` steps, not counted as
training time). Variants, alternated within each seed (the order rotates from seed to seed):

1. `plain TRL`: `trl.GRPOTrainer` with `trl.GRPOConfig(**settings)`.
2. `grpokit + dynamic sampling`: `grpokit.trainer.train()` with the same settings and `dynamic_sampling: true`.
3. `grpokit, probe-filtered data`: `grpokit probe` over every training problem (K = num_generations
   samples each, the run's seed) writes the problems without the zero-spread ones; `train()` then
   trains on that file. The probe's seconds are reported separately and in the "with probe" ratio.

Settings (`--settings`): `demo` is examples/demo.yaml (temperature 1.0); `low-temperature` is the same
with the AWS sample's sampling (temperature 0.2, top_p 0.9), where most groups come out all right
or all wrong. Reported per run: optimizer steps, tokens through generation (TRL's `num_tokens`:
prompt + completion tokens of every completion generated, refill rounds included) and training seconds
to the first evaluation at or above `--target`; per variant, medians and min-max over seeds. Against
plain TRL the figures are paired by seed: each seed gives the variant's figure over plain TRL's with
that seed (bounds when a run never reached the target, `benchlib.censored_ratio`), and the table shows
the median over seeds and the min-max.

Writes benchmarks/results/data_efficiency.json (arguments, machine, load average, every run, the paired
summary) and data_efficiency.md.
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
from transformers import TrainerCallback

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
# The TRL fields of examples/demo.yaml; grpokit's own keys (model, data, rewards, output) are set per run.
DEMO_TRL_SETTINGS = {
    key: value
    for key, value in DEMO_SETTINGS.items()
    if key not in ("model_id", "use_lora", "train_dataset_path", "output_dir", "resume", "rewards", "save_strategy")
}
SETTINGS = {
    "demo": DEMO_TRL_SETTINGS,
    "low-temperature": {**DEMO_TRL_SETTINGS, "temperature": 0.2, "top_p": 0.9},
}
VARIANTS = ("plain TRL", "grpokit + dynamic sampling", "grpokit, probe-filtered data")


@dataclass
class Run:
    settings: str
    variant: str
    seed: int
    reached: bool
    steps_to_target: int | None
    tokens_to_target: int | None
    cpu_seconds_to_target: float | None  # this process's CPU seconds of training, held-out evaluations excluded
    seconds_to_target: float | None  # wall-clock training seconds, held-out evaluations excluded
    probe_cpu_seconds: float  # the probe's CPU seconds (probe-filtered variant only)
    probe_seconds: float  # the probe's wall time
    rows_trained_on: int
    steps_run: int
    cpu_seconds_run: float  # training CPU seconds of the whole run (to its last evaluation)
    tokens_run: int  # tokens through generation of the whole run (to its last evaluation)
    train_seconds: float
    accuracy_before: float
    accuracy_final: float
    curve: list[list[float]]  # [step, accuracy, train seconds, train CPU seconds, tokens]


def heldout_callback(args: argparse.Namespace) -> HeldoutAccuracyCallback:
    return HeldoutAccuracyCallback(
        addition.heldout_problems(args.heldout), every_steps=args.eval_every, stop_at_accuracy=args.target
    )


def measured_run_callbacks(args: argparse.Namespace) -> tuple[HeldoutAccuracyCallback, Meter, list[TrainerCallback]]:
    heldout = heldout_callback(args)
    meter, callbacks = measured_callbacks(heldout)
    return heldout, meter, callbacks


def run_plain_trl(settings: dict, data_file: Path, workdir: Path, args: argparse.Namespace, seed: int):
    from datasets import load_dataset
    from trl import GRPOConfig, GRPOTrainer

    dataset = load_dataset("json", data_files=str(data_file), split="train", cache_dir=str(workdir / "hf-cache"))
    config = GRPOConfig(
        output_dir=str(workdir / "trl"), bf16=False, use_cpu=True, report_to="none", save_strategy="no",
        **{**settings, "seed": seed, "max_steps": args.max_steps},
    )  # fmt: skip
    heldout, meter, callbacks = measured_run_callbacks(args)
    trainer = GRPOTrainer(
        model=resolve_model_path("builtin:tiny"),
        reward_funcs=build_reward("exact_match"),
        args=config,
        train_dataset=dataset,
        callbacks=callbacks,
    )
    started = time.perf_counter()
    trainer.train()
    return heldout, meter, time.perf_counter() - started - heldout.eval_seconds, len(dataset)


def grpokit_config(settings: dict, data_file: Path, workdir: Path, args: argparse.Namespace, seed: int, **extra):
    from grpokit.config.loading import load_config

    data = {
        "model_id": "builtin:tiny",
        "use_lora": False,
        "train_dataset_path": str(data_file),
        "output_dir": str(workdir / "grpokit"),
        "resume": "never",
        "rewards": [{"name": "exact_match"}],
        "save_strategy": "no",
        "report_to": "none",
        **settings,
        "seed": seed,
        "max_steps": args.max_steps,
        **extra,
    }
    return load_config(data=data)


def run_grpokit(config, args: argparse.Namespace):
    from grpokit.trainer import train

    heldout, meter, callbacks = measured_run_callbacks(args)
    result = train(config, extra_callbacks=callbacks)
    return heldout, meter, result.train_seconds - heldout.eval_seconds


def run_variant(variant: str, setting: str, seed: int, data_file: Path, workdir: Path, args: argparse.Namespace) -> Run:
    settings = SETTINGS[setting]
    probe_seconds = probe_cpu_seconds = 0.0
    rows = TRAIN_PROBLEMS
    if variant == "plain TRL":
        heldout, meter, seconds, rows = run_plain_trl(settings, data_file, workdir, args, seed)
    elif variant == "grpokit + dynamic sampling":
        config = grpokit_config(settings, data_file, workdir, args, seed, dynamic_sampling={"enabled": True})
        heldout, meter, seconds = run_grpokit(config, args)
    else:
        from grpokit.commands.probe import ProbeOptions, run_probe

        filtered = workdir / "filtered.jsonl"
        started, cpu_started = time.perf_counter(), time.process_time()
        probe = run_probe(
            grpokit_config(settings, data_file, workdir, args, seed),
            ProbeOptions(rows=TRAIN_PROBLEMS, write_filtered=filtered),
            json_path=workdir / "probe.json",
        )
        probe_seconds, probe_cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
        rows = probe.filtered_rows
        heldout, meter, seconds = run_grpokit(grpokit_config(settings, filtered, workdir, args, seed), args)
    reached = next((entry for entry in heldout.history if entry.accuracy >= args.target), None)
    return Run(
        settings=setting,
        variant=variant,
        seed=seed,
        reached=reached is not None,
        steps_to_target=reached.step if reached else None,
        tokens_to_target=meter.tokens.get(reached.step) if reached else None,
        cpu_seconds_to_target=round(meter.cpu[reached.step], 2) if reached else None,
        seconds_to_target=round(reached.train_seconds, 2) if reached else None,
        probe_cpu_seconds=round(probe_cpu_seconds, 2),
        probe_seconds=round(probe_seconds, 2),
        rows_trained_on=rows,
        steps_run=heldout.history[-1].step,
        cpu_seconds_run=round(meter.cpu.get(heldout.history[-1].step, 0.0), 2),
        tokens_run=max(meter.tokens.values()),
        train_seconds=round(seconds, 2),
        accuracy_before=heldout.history[0].accuracy,
        accuracy_final=heldout.history[-1].accuracy,
        curve=[
            [e.step, e.accuracy, round(e.train_seconds, 2), round(meter.cpu.get(e.step, 0.0), 2), meter.tokens.get(e.step)]
            for e in heldout.history
        ],
    )


def _number(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def _median_and_range(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return _number(values[0])
    return f"{_number(statistics.median(values))} ({_number(min(values))}-{_number(max(values))})"


# measure: (the figure to the target, the same figure for the whole run: a lower bound when it was never reached)
MEASURES = {
    "cpu_seconds": ("cpu_seconds_to_target", "cpu_seconds_run"),
    "steps": ("steps_to_target", "steps_run"),
    "tokens": ("tokens_to_target", "tokens_run"),
}


def _whole_run(run: dict, key: str) -> float:
    if key == "tokens_run" and key not in run:  # results of the script before tokens_run was recorded
        return run["curve"][-1][4] or 0
    return run[key]


def summarize(runs: list[dict], settings: list[str]) -> dict:
    """Per setting and variant: each seed's ratio to plain TRL's run with the same seed (bounds when a run never
    reached the target, see `benchlib.censored_ratio`), then their median and min-max over seeds."""
    summary: dict = {}
    for setting in settings:
        base = {r["seed"]: r for r in runs if r["settings"] == setting and r["variant"] == "plain TRL"}
        summary[setting] = {}
        for variant in VARIANTS:
            group = [r for r in runs if r["settings"] == setting and r["variant"] == variant and r["seed"] in base]
            figures = {}
            for name, (to_target, whole) in MEASURES.items():
                bounds = [
                    censored_ratio(r[to_target], _whole_run(r, whole), base[r["seed"]][to_target], _whole_run(base[r["seed"]], whole))
                    for r in group
                ]
                figures[name] = paired_bounds(bounds)
            with_probe = [
                censored_ratio(
                    None if r["cpu_seconds_to_target"] is None else r["cpu_seconds_to_target"] + r["probe_cpu_seconds"],
                    r["cpu_seconds_run"] + r["probe_cpu_seconds"],
                    base[r["seed"]]["cpu_seconds_to_target"],
                    base[r["seed"]]["cpu_seconds_run"],
                )
                for r in group
            ]
            figures["cpu_seconds_with_probe"] = paired_bounds(with_probe)
            summary[setting][variant] = {"seeds": [r["seed"] for r in group], "vs_plain_trl": figures}
    return summary


def markdown_table(payload: dict) -> str:
    runs, arguments, summary = payload["runs"], payload["arguments"], payload["summary"]
    intro = (
        f"Steps, generated tokens and training time for GRPO to raise `builtin:tiny`'s greedy accuracy on "
        f"{arguments['heldout']} held-out addition problems to {arguments['target']}, at equal settings "
        f"(budget {arguments['max_steps']} steps); seeds {arguments['seeds']}, the variants alternating within each seed. "
        "Per-variant columns: median (min-max) over the seeds that reached the target. \"vs TRL\": per seed, the "
        "variant's figure over plain TRL's with the same seed; median over seeds (min to max)."
    )
    header = "| variant | reached | steps | tokens | CPU s | wall s | vs TRL: CPU time | CPU time with probe | steps | tokens |"
    lines = [intro, ""]
    for setting in summary:
        share = payload.get("zero_spread_at_start", {}).get(setting)
        lines += [
            f"**{setting}**: {SETTINGS_DESCRIBED[setting]}"
            + (f"; zero-spread groups at the start (the probe): {share:.0%}" if share is not None else ""),
            "",
            header,
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for variant in VARIANTS:
            group = [r for r in runs if r["settings"] == setting and r["variant"] == variant]
            versus = summary[setting][variant]["vs_plain_trl"]
            columns = [
                _median_and_range([r[key] for r in group if r["reached"]])
                for key in ("steps_to_target", "tokens_to_target", "cpu_seconds_to_target", "seconds_to_target")
            ]
            with_probe = bounds_spread_text(versus["cpu_seconds_with_probe"]) if variant.endswith("data") else "-"
            ratios = [
                "-" if variant == "plain TRL" else bounds_spread_text(versus[name]) for name in ("cpu_seconds", "steps", "tokens")
            ]
            lines.append(
                f"| {variant} | {sum(r['reached'] for r in group)}/{len(group)} | " + " | ".join(columns)
                + f" | {ratios[0]} | {with_probe} | {ratios[1]} | {ratios[2]} |"
            )
        lines.append("")
    lines.append(
        "Below 1 is better. A run that never reached the target bounds its seed's ratio with its whole run: "
        "\"> N x\" when the variant never got there, \"< N x\" when plain TRL never did. CPU seconds are this "
        "process's CPU time spent training (one torch thread; held-out evaluations every "
        f"{arguments['eval_every']} steps excluded, so \"to target\" is resolved to {arguments['eval_every']} steps): "
        "other processes on a shared machine stretch wall-clock seconds far more than CPU seconds. Tokens are TRL's "
        "`num_tokens` (prompt + completion tokens of every completion generated). \"with probe\" adds the probe's "
        f"CPU seconds. {conditions_text(payload)}. Reproduce: `{payload['command']}`."
    )
    if payload.get("note"):
        lines += ["", f"Note: {payload['note']}."]
    return "\n".join(lines) + "\n"


SETTINGS_DESCRIBED = {
    "demo": "examples/demo.yaml: lr 1e-4 linear decay, 8 prompts x 8 completions, temperature 1.0",
    "low-temperature": "the same with temperature 0.2, top_p 0.9 (the AWS sample's sampling)",
}


def write_results(payload: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "data_efficiency.json").write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    (out / "data_efficiency.md").write_text(markdown_table(payload), encoding="utf-8")
    print(markdown_table(payload))


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--settings", nargs="+", choices=sorted(SETTINGS), default=["demo", "low-temperature"])
    parser.add_argument("--target", type=float, default=0.8, help="held-out accuracy to reach (default 0.8)")
    parser.add_argument("--max-steps", type=int, default=DEMO_SETTINGS["max_steps"], help="step budget per run")
    parser.add_argument("--eval-every", type=int, default=5)
    parser.add_argument("--heldout", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: steadier on a shared machine)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: seeds 0 1, demo settings, 4 steps, 20 held-out problems, into results/quick/")
    parser.add_argument("--out", type=Path, default=None, help="results folder (default benchmarks/results/)")
    parser.add_argument("--resummarize", type=Path, help="recompute the summary and table of an existing results file from its runs")
    args = parser.parse_args(argv)
    if args.resummarize:
        payload = json.loads(args.resummarize.read_text(encoding="utf-8"))
        payload["summary"] = summarize(payload["runs"], payload["arguments"]["settings"])
        return write_results(payload, args.out or args.resummarize.parent)
    if args.quick:
        args.seeds, args.settings, args.max_steps, args.eval_every, args.heldout = [0, 1], ["demo"], 4, 2, 20
        args.out = args.out or RESULTS_DIR / "quick"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()
    load_before = load_average()
    runs: list[Run] = []
    zero_spread: dict[str, list[float]] = {}
    workroot = Path(tempfile.mkdtemp(prefix="grpokit-efficiency-"))
    try:
        for setting in args.settings:
            for index, seed in enumerate(args.seeds):
                data_file = write_training_problems(workroot / f"train-{seed}.jsonl", TRAIN_PROBLEMS, seed=seed)
                order = VARIANTS[index % 3 :] + VARIANTS[: index % 3]  # rotate who runs first
                for variant in order:
                    workdir = workroot / f"{setting}-{seed}-{VARIANTS.index(variant)}"
                    print(f"== {setting} seed {seed}: {variant}", flush=True)
                    runs.append(run_variant(variant, setting, seed, data_file, workdir, args))
                    if variant.endswith("data"):
                        probe = json.loads((workdir / "probe.json").read_text())
                        zero_spread.setdefault(setting, []).append(probe["zero_spread_share"])
                    print(json.dumps(asdict(runs[-1]))[:300], flush=True)
                    shutil.rmtree(workdir, ignore_errors=True)
    finally:
        shutil.rmtree(workroot, ignore_errors=True)
    run_dicts = [asdict(run) for run in runs]
    payload = {
        "benchmark": "data_efficiency",
        **invocation("data_efficiency.py", argv, vars(args)),
        "machine": {**machine(), "torch_threads": torch.get_num_threads()},
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "zero_spread_at_start": {setting: statistics.median(shares) for setting, shares in zero_spread.items()},
        "summary": summarize(run_dicts, args.settings),
        "runs": run_dicts,
    }
    write_results(payload, args.out or RESULTS_DIR)


if __name__ == "__main__":
    main()
