"""Data efficiency at equal settings: plain TRL against grpokit with dynamic sampling and on probe-filtered data.

    .venv/bin/python benchmarks/data_efficiency.py                     # 3 seeds x 3 variants x 2 settings
    .venv/bin/python benchmarks/data_efficiency.py --seeds 0 1 2 3 4 --target 0.8 --settings demo

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
to the first evaluation at or above `--target`; medians and min-max over seeds; ratios to plain TRL.

Writes benchmarks/results/data_efficiency.json and data_efficiency.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import transformers
import trl
from transformers import TrainerCallback

from grpokit.commands.demo import DEMO_SETTINGS, HeldoutAccuracyCallback, write_training_problems
from grpokit.model.builtin import addition, resolve_model_path
from grpokit.rewards import build_reward

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
    train_seconds: float
    accuracy_before: float
    accuracy_final: float
    curve: list[list[float]]  # [step, accuracy, train seconds, train CPU seconds, tokens]


class Meter(TrainerCallback):
    """Per step: TRL's running count of tokens through generation, and this process's CPU seconds of training.

    CPU seconds (`time.process_time`) count the work this process did, which other processes on a
    shared machine slow down far less than they stretch wall-clock time. The held-out evaluation's CPU
    time is left out: `EvalCpu` instances placed just before and after the evaluation callback time it.
    """

    def __init__(self) -> None:
        self.tokens: dict[int, int] = {0: 0}
        self.cpu: dict[int, float] = {0: 0.0}  # training CPU seconds when the step's evaluation started
        self.started = 0.0
        self.eval_cpu = 0.0
        self.eval_started: float | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.started = time.process_time()

    def on_step_end(self, args, state, control, **kwargs):
        self.tokens[state.global_step] = int(state.num_input_tokens_seen)

    def before_eval(self, step: int) -> None:
        self.eval_started = time.process_time()
        self.cpu[step] = self.eval_started - self.started - self.eval_cpu

    def after_eval(self) -> None:
        self.eval_cpu += time.process_time() - (self.eval_started or time.process_time())


class EvalCpu(TrainerCallback):
    """Marks the start (`before=True`) or end of the held-out evaluation in a step's `on_log`."""

    def __init__(self, meter: Meter, *, before: bool) -> None:
        self.meter, self.before = meter, before

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is None or "train_runtime" in logs:
            return
        if self.before:
            self.meter.before_eval(state.global_step)
        else:
            self.meter.after_eval()


def heldout_callback(args: argparse.Namespace) -> HeldoutAccuracyCallback:
    return HeldoutAccuracyCallback(
        addition.heldout_problems(args.heldout), every_steps=args.eval_every, stop_at_accuracy=args.target
    )


def measured_callbacks(args: argparse.Namespace) -> tuple[HeldoutAccuracyCallback, Meter, list[TrainerCallback]]:
    heldout, meter = heldout_callback(args), Meter()
    return heldout, meter, [meter, EvalCpu(meter, before=True), heldout, EvalCpu(meter, before=False)]


def run_plain_trl(settings: dict, data_file: Path, workdir: Path, args: argparse.Namespace, seed: int):
    from datasets import load_dataset
    from trl import GRPOConfig, GRPOTrainer

    dataset = load_dataset("json", data_files=str(data_file), split="train", cache_dir=str(workdir / "hf-cache"))
    config = GRPOConfig(
        output_dir=str(workdir / "trl"), bf16=False, use_cpu=True, report_to="none", save_strategy="no",
        **{**settings, "seed": seed, "max_steps": args.max_steps},
    )  # fmt: skip
    heldout, meter, callbacks = measured_callbacks(args)
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

    heldout, meter, callbacks = measured_callbacks(args)
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


def markdown_table(runs: list[Run], meta: dict) -> str:
    intro = (
        f"Steps, generated tokens and training time for GRPO to raise `builtin:tiny`'s greedy accuracy on "
        f"{meta['heldout_problems']} held-out addition problems from 0.57 to {meta['target']}, at equal settings "
        f"(budget {meta['max_steps']} steps); seeds {meta['seeds']}; median (min-max) over seeds; {meta['machine']}."
    )
    header = (
        "| variant | reached | steps | tokens | CPU s | wall s | vs TRL: CPU time | CPU time with probe "
        "| steps | tokens |"
    )
    lines = [intro, ""]
    for setting in meta["settings"]:
        share = meta["zero_spread_at_start"].get(setting)
        lines += [
            f"**{setting}**: {meta['settings_described'][setting]}"
            + (f"; zero-spread groups at the start (the probe): {share:.0%}" if share is not None else ""),
            "",
            header,
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        base = [r for r in runs if r.settings == setting and r.variant == "plain TRL"]
        for variant in VARIANTS:
            group = [r for r in runs if r.settings == setting and r.variant == variant]
            probe_cpu = _median([r.probe_cpu_seconds for r in group]) or 0.0
            budgets = {  # plain TRL's whole run: a lower bound on its time to a target it never reached
                "cpu_seconds_to_target": _median([r.cpu_seconds_run for r in base]),
                "steps_to_target": _median([r.steps_run for r in base]),
                "tokens_to_target": None,
            }
            ratios = [
                _ratio(_median_to_target(group, key), _median_to_target(base, key), budgets[key])
                for key in ("cpu_seconds_to_target", "steps_to_target", "tokens_to_target")
            ]
            with_probe = _ratio(
                _plus(_median_to_target(group, "cpu_seconds_to_target"), probe_cpu),
                _median_to_target(base, "cpu_seconds_to_target"),
                budgets["cpu_seconds_to_target"],
            )
            lines.append(
                f"| {variant} | {sum(r.reached for r in group)}/{len(group)} "
                + "".join(f"| {_median_and_range([getattr(r, key) for r in group if r.reached])} " for key in (
                    "steps_to_target", "tokens_to_target", "cpu_seconds_to_target", "seconds_to_target"))
                + f"| {ratios[0]} | {with_probe if variant.endswith('data') else '-'} | {ratios[1]} | {ratios[2]} |"
            )
        lines.append("")
    lines.append(
        "\"vs TRL\": the variant's median over plain TRL's (below 1 is better); a run that never reaches the target "
        "counts as infinitely long, so a median over seeds that did not reach it shows \"-\", and a ratio against a plain TRL that did not reach it is \"< N x\": N is the variant's time over plain TRL's whole run. Min-max are over the "
        "seeds that reached it. CPU seconds are this process's CPU time spent training (one torch thread; held-out "
        f"evaluations every {meta['eval_every']} steps excluded, so \"to target\" is resolved to {meta['eval_every']} "
        "steps): other processes on a shared machine stretch wall-clock seconds far more than CPU seconds. Tokens are "
        "TRL's `num_tokens` (prompt + completion tokens of every completion generated). \"with probe\" adds the "
        f"probe's CPU seconds. Load average (1 min) {meta['load_average_start'][0]} at start, "
        f"{meta['load_average_end'][0]} at end. Produced by `benchmarks/data_efficiency.py`."
    )
    return "\n".join(lines) + "\n"


def _median_to_target(runs: list[Run], key: str) -> float | None:
    """The median over runs of `key`, a run that never reached the target counting as infinitely long."""
    if not runs:
        return None
    median = statistics.median([getattr(r, key) if r.reached else math.inf for r in runs])
    return None if math.isinf(median) else median


def _plus(value: float | None, extra: float) -> float | None:
    return None if value is None else value + extra


def _median(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _ratio(ours: float | None, theirs: float | None, their_budget: float | None = None) -> str:
    """ours / theirs; "< N x" when plain TRL never got there and N is ours over its whole run."""
    if ours is None:
        return "-"
    if theirs:
        return f"{ours / theirs:.2f}x"
    return f"< {ours / their_budget:.2f}x" if their_budget else "-"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--settings", nargs="+", choices=sorted(SETTINGS), default=["demo", "low-temperature"])
    parser.add_argument("--target", type=float, default=0.8, help="held-out accuracy to reach (default 0.8)")
    parser.add_argument("--max-steps", type=int, default=DEMO_SETTINGS["max_steps"], help="step budget per run")
    parser.add_argument("--eval-every", type=int, default=5)
    parser.add_argument("--heldout", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: steadier on a shared machine)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()
    load_start = [round(x, 1) for x in os.getloadavg()]
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
    meta = {
        "target": args.target,
        "seeds": args.seeds,
        "settings": args.settings,
        "settings_described": {
            "demo": "examples/demo.yaml: lr 1e-4 linear decay, 8 prompts x 8 completions, temperature 1.0",
            "low-temperature": "the same with temperature 0.2, top_p 0.9 (the AWS sample's sampling)",
        },
        "max_steps": args.max_steps,
        "eval_every": args.eval_every,
        "heldout_problems": args.heldout,
        "zero_spread_at_start": {setting: statistics.median(shares) for setting, shares in zero_spread.items()},
        "machine": f"{os.cpu_count()} CPU cores ({platform.machine()}), torch {torch.__version__} with "
        f"{torch.get_num_threads()} thread(s), no GPU",
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "trl": trl.__version__},
        "load_average_start": load_start,
        "load_average_end": [round(x, 1) for x in os.getloadavg()],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    payload = {**meta, "runs": [asdict(run) for run in runs]}
    (args.out / "data_efficiency.json").write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    (args.out / "data_efficiency.md").write_text(markdown_table(runs, meta), encoding="utf-8")
    print(markdown_table(runs, meta))


if __name__ == "__main__":
    main()
