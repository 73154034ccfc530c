"""grpokit's overhead: `grpokit train` against a plain TRL script doing the same work at the same settings.

    .venv/bin/python benchmarks/overhead.py                  # 5 rounds x 2 lengths (10, 80 steps) x 2 sides: about 15 minutes
    .venv/bin/python benchmarks/overhead.py --quick          # smoke run (2 rounds of 2 and 4 steps) into results/quick/
    .venv/bin/python benchmarks/overhead.py --resummarize benchmarks/results/overhead.json   # tables again from its runs

Both sides train `builtin:tiny` on the same 2,000 addition problems with examples/demo.yaml's
settings (full fine-tuning, 8 prompts x 8 completions, lr 1e-4, temperature 1.0, an exact-match
reward, no checkpoints, a log every step) and save the final model; every run is a fresh process.
Each round runs both sides at a short and a long step count, the side going first alternating from
round to round. Measured per run, from the parent:

- wall: from starting the process to its exit;
- CPU: the child's user + system seconds (`os.wait4`), which other processes on a shared machine
  inflate far less than wall time;
- training loop: from `on_train_begin` to the last step's log, tiled by the time between consecutive
  step logs (grpokit: metrics.jsonl's `step_time`; the TRL script: the same measurement by a callback);
- peak RSS: the child's `ru_maxrss`.

Reported as paired figures: each round gives one grpokit-over-TRL ratio (or difference) per measure,
from the two sides' runs of that round; the table shows the median over rounds and the min-max.
Per-step CPU time is the slope of CPU over the step count between a round's short and long runs;
fixed CPU time its intercept (interpreter, imports, config, data, model and trainer build, tracking
set-up, final save, report, exit); per-step wall time the median interval of the long run, the
warm-up step left out; fixed wall time is wall minus training loop; whole-process wall and CPU and
peak RSS are the long runs'. Targets (issues 13 and 21): per-step time and whole-process wall within
5% of TRL's, fixed overhead at most 2 s above TRL's, peak RSS within 5%. A last run times grpokit's
phases in one process (`--no-phases` skips it).

Writes benchmarks/results/overhead.json (arguments, machine, load average, every run, the paired
summary) and overhead.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import conditions_text, invocation, load_average, machine, paired, spread_text

RESULTS_DIR = Path(__file__).resolve().parent / "results"
# TRL's fields of the demo config (examples/demo.yaml = grpokit.commands.demo.DEMO_SETTINGS), both sides'
# settings; `report_to` keeps the plain script from starting a tracker of its own.
PLAIN_TRL_EXTRA = {"report_to": "none"}


def demo_trl_settings() -> dict:
    """The demo config's TRL fields (what both sides train with), read from the demo itself."""
    from grpokit.commands.demo import DEMO_SETTINGS
    from grpokit.config.schema import GrpokitOptions
    from grpokit.config.trl_fields import trl_field_names

    trl_only = set(trl_field_names()) - set(GrpokitOptions.model_fields)  # output_dir is both: each side sets its own
    return {**{key: value for key, value in DEMO_SETTINGS.items() if key in trl_only}, **PLAIN_TRL_EXTRA}


# ----------------------------------------------------------------------------- the children


def child_plain_trl(data_file: str, output_dir: str, settings_json: str, timings_file: str) -> None:
    """The plain TRL script a user would write (no grpokit import), timing its steps like metrics.jsonl does."""
    from transformers import TrainerCallback

    class StepIntervals(TrainerCallback):
        def __init__(self) -> None:
            self.last = 0.0
            self.intervals: list[float] = []

        def on_train_begin(self, args, state, control, **kwargs):
            self.last = time.perf_counter()

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "train_runtime" not in logs:
                now = time.perf_counter()
                self.intervals.append(now - self.last)
                self.last = now

    timer = StepIntervals()
    trainer = plain_trl_trainer(data_file, output_dir, json.loads(settings_json), callbacks=[timer])
    trainer.train()
    trainer.save_model(output_dir)
    Path(timings_file).write_text(json.dumps({"intervals": timer.intervals}))


def plain_trl_trainer(data_file: str, output_dir: str, settings: dict, callbacks: list):
    """The plain TRL script's trainer: its data, exact-match reward and GRPOConfig (step_profile.py builds it too)."""
    import re

    from datasets import load_dataset
    from trl import GRPOConfig, GRPOTrainer

    def exact_match(completions, answer, **kwargs):
        return [1.0 if (m := re.match(r"\s*([0-9]+)", c)) and m.group(1) == a else 0.0 for c, a in zip(completions, answer)]

    dataset = load_dataset("json", data_files=data_file, split="train")
    config = GRPOConfig(output_dir=f"{output_dir}/checkpoints", bf16=False, use_cpu=True, **settings)
    return GRPOTrainer(
        model=os.environ["TINY_MODEL_PATH"], reward_funcs=exact_match, args=config, train_dataset=dataset, callbacks=callbacks
    )


def child_grpokit_phases(config_file: str, timings_file: str) -> None:
    """`grpokit train`'s steps (load the config, train, write the report), with a timestamp between each."""
    marks = {"start": time.perf_counter()}
    from transformers import TrainerCallback

    from grpokit.config import load_config

    marks["imported"] = time.perf_counter()
    config = load_config(config_file)
    marks["config"] = time.perf_counter()
    from grpokit.outputs.report import write_report
    from grpokit.trainer import train

    class Phases(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            marks["train_begin"] = time.perf_counter()

        def on_train_end(self, args, state, control, **kwargs):
            marks["train_end"] = time.perf_counter()

    train(config, extra_callbacks=[Phases()])
    marks["saved"] = time.perf_counter()
    write_report(config.options.output_dir)
    marks["report"] = time.perf_counter()
    Path(timings_file).write_text(json.dumps(marks))


# ----------------------------------------------------------------------------- the parent

KINDS = ("plain TRL", "grpokit")


def run_child(command: list[str], env: dict[str, str], cwd: Path) -> dict[str, float]:
    """Wall seconds, CPU seconds and peak RSS (MB) of one child process; its output goes to a file next to it."""
    log = cwd / f"child-{time.monotonic_ns()}.log"
    with log.open("w") as output:
        started = time.perf_counter()
        process = subprocess.Popen(command, env=env, cwd=cwd, stdout=output, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)  # this child's own rusage, not every child's maximum
        wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:5])} failed ({process.returncode}):\n{log.read_text()[-3000:]}")
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "peak_rss_mb": usage.ru_maxrss / 1024}  # KiB on Linux


def measure(kind: str, steps: int, paths: dict, env: dict[str, str], repeat: int) -> dict:
    out = paths["work"] / f"{kind.replace(' ', '-')}-{steps}-{repeat}"
    settings = {**paths["settings"], "max_steps": steps}
    if kind == "plain TRL":
        timings = out / "timings.json"
        out.mkdir(parents=True)
        command = [sys.executable, __file__, "--child-trl", str(paths["data"]), str(out), json.dumps(settings), str(timings)]
        usage = run_child(command, env, paths["work"])
        intervals = json.loads(timings.read_text())["intervals"]
    else:
        config_file = paths["work"] / f"config-{steps}-{repeat}.yaml"
        config_file.write_text(grpokit_yaml(paths["data"], settings, out))
        usage = run_child([sys.executable, "-m", "grpokit", "train", str(config_file)], env, paths["work"])
        lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        intervals = [line["step_time"] for line in lines if "step_time" in line]
    shutil.rmtree(out, ignore_errors=True)
    loop = sum(intervals)
    return {
        "kind": kind,
        "steps": steps,
        "repeat": repeat,
        "wall_s": round(usage["wall"], 3),
        "cpu_s": round(usage["cpu"], 3),
        "loop_s": round(loop, 3),
        "fixed_wall_s": round(usage["wall"] - loop, 3),
        "step_wall_s": round(statistics.median(intervals[1:]), 5),
        "peak_rss_mb": round(usage["peak_rss_mb"], 1),
        "logged_steps": len(intervals),
    }


def grpokit_yaml(data_file: Path, settings: dict, output_dir: Path) -> str:
    import yaml

    config = {
        "model_id": "builtin:tiny",
        "use_lora": False,
        "train_dataset_path": str(data_file),
        "output_dir": str(output_dir),
        "resume": "never",
        "rewards": [{"name": "exact_match"}],
        **settings,
    }
    return yaml.safe_dump(config, sort_keys=False)


def side_figures(runs: list[dict], short: int, long: int) -> dict:
    """One side's figures in one round: CPU slope and intercept over its short and long runs, the long run's rest."""
    by_steps = {run["steps"]: run for run in runs}
    per_step_cpu = (by_steps[long]["cpu_s"] - by_steps[short]["cpu_s"]) / (long - short)
    longest = by_steps[long]
    return {
        "step_cpu_s": per_step_cpu,
        "fixed_cpu_s": by_steps[short]["cpu_s"] - short * per_step_cpu,
        **{key: longest[key] for key in ("step_wall_s", "fixed_wall_s", "loop_s", "wall_s", "cpu_s", "peak_rss_mb")},
    }


# measure: (how grpokit's figure is set against TRL's in a round, the key in side_figures)
PAIRED_MEASURES = {
    "step_cpu_ratio": ("ratio", "step_cpu_s"),
    "step_wall_ratio": ("ratio", "step_wall_s"),
    "fixed_cpu_extra_s": ("difference", "fixed_cpu_s"),
    "fixed_wall_extra_s": ("difference", "fixed_wall_s"),
    "process_wall_ratio": ("ratio", "wall_s"),
    "process_cpu_ratio": ("ratio", "cpu_s"),
    "peak_rss_ratio": ("ratio", "peak_rss_mb"),
}


def summarize(runs: list[dict], short: int, long: int) -> dict:
    """Per round: both sides' figures and grpokit against TRL (a ratio or a difference per measure);
    then, per measure, the median and min-max over rounds (`paired`), and each side's median figures."""
    rounds = sorted({run["repeat"] for run in runs})
    per_round = []
    for index in rounds:
        sides = {
            kind: side_figures([r for r in runs if r["repeat"] == index and r["kind"] == kind], short, long) for kind in KINDS
        }
        ours, theirs = sides["grpokit"], sides["plain TRL"]
        versus = {
            name: ours[key] / theirs[key] if how == "ratio" else ours[key] - theirs[key]
            for name, (how, key) in PAIRED_MEASURES.items()
        }
        per_round.append({"round": index, "sides": sides, "grpokit_vs_trl": versus})
    comparison = {
        name: paired([entry["grpokit_vs_trl"][name] for entry in per_round], digits=4 if how == "ratio" else 3)
        for name, (how, _) in PAIRED_MEASURES.items()
    }
    sides = {
        kind: {key: round(statistics.median(entry["sides"][kind][key] for entry in per_round), 4) for key in per_round[0]["sides"][kind]}
        for kind in KINDS
    }
    return {"rounds": per_round, "comparison": comparison, "sides": sides}


TARGETS = {  # measure: (limit, how the limit reads)
    "step_cpu_ratio": (1.05, "at most 1.05x"),
    "step_wall_ratio": (1.05, "at most 1.05x"),
    "fixed_cpu_extra_s": (2.0, "at most +2 s"),
    "fixed_wall_extra_s": (2.0, "at most +2 s"),
    "process_wall_ratio": (1.05, "at most 1.05x"),
    "peak_rss_ratio": (1.05, "at most 1.05x"),
}
ROWS = [  # (label, measure, side key, side format)
    ("per-step CPU time (s; slope between the short and long run)", "step_cpu_ratio", "step_cpu_s", "{:.4f}"),
    ("per-step wall time (s; median step of the long run, first left out)", "step_wall_ratio", "step_wall_s", "{:.4f}"),
    ("fixed CPU time (s; intercept)", "fixed_cpu_extra_s", "fixed_cpu_s", "{:.2f}"),
    ("fixed wall time (s; long run's wall minus its training loop)", "fixed_wall_extra_s", "fixed_wall_s", "{:.2f}"),
    ("whole process, wall (s; long run)", "process_wall_ratio", "wall_s", "{:.2f}"),
    ("whole process, CPU (s; long run)", "process_cpu_ratio", "cpu_s", "{:.2f}"),
    ("peak RSS (MB; long run)", "peak_rss_ratio", "peak_rss_mb", "{:.0f}"),
]


def verdict(measure: str, stat: dict) -> str:
    """'met' / 'over' for the median, and whether every round agrees."""
    if measure not in TARGETS or stat["median"] is None:
        return ""
    limit, text = TARGETS[measure]
    within = [value <= limit for value in stat["per_round"]]
    median_met = stat["median"] <= limit
    agreement = "every round" if all(within) else "no round" if not any(within) else f"{sum(within)} of {len(within)} rounds"
    return f"{text}: {'met' if median_met else '**over**'} ({agreement} within)"


def versus_text(measure: str, stat: dict) -> str:
    if PAIRED_MEASURES[measure][0] == "ratio":
        return spread_text(stat, "{:.2f}", "x")
    return spread_text(stat, "{:+.2f}", " s")


def markdown(payload: dict) -> str:
    summary, arguments = payload["summary"], payload["arguments"]
    short, long, rounds = arguments["short"], arguments["long"], len(summary["rounds"])
    lines = [
        (f"`grpokit train` against a plain TRL script at identical settings (examples/demo.yaml's settings, "
         f"{short} and {long} steps, final model saved, OMP_NUM_THREADS={arguments['threads']}), {rounds} rounds of "
         f"fresh processes, the side going first alternating. \"grpokit vs TRL\": per round, grpokit's figure over "
         f"(or minus) TRL's in that round; median over rounds (min to max). Side columns: medians over rounds."),
        "",
        "| | plain TRL | grpokit | grpokit vs TRL | target |",
        "|---|---:|---:|---:|---|",
    ]
    for label, measure, key, form in ROWS:
        stat = summary["comparison"][measure]
        theirs, ours = (form.format(summary["sides"][kind][key]) for kind in KINDS)
        lines.append(f"| {label} | {theirs} | {ours} | {versus_text(measure, stat)} | {verdict(measure, stat)} |")
    lines += ["", "Per round (grpokit over TRL; fixed times: grpokit minus TRL, s):", ""]
    lines.append("| round | first | " + " | ".join(measure for _, measure, _, _ in ROWS) + " |")
    lines.append("|---|---|" + "---:|" * len(ROWS))
    for entry in summary["rounds"]:
        first = KINDS[entry["round"] % 2]
        values = " | ".join(f"{entry['grpokit_vs_trl'][measure]:.3f}" for _, measure, _, _ in ROWS)
        lines.append(f"| {entry['round']} | {first} | {values} |")
    phases = payload.get("phases")
    if phases:
        lines += ["", "Where grpokit's time goes (one long run in one process, `grpokit train`'s steps):", ""]
        lines.append("| imports | config | build (data, model, trainer) | training loop | final save | report |")
        lines.append("|---:|---:|---:|---:|---:|---:|")
        lines.append("| " + " | ".join(f"{phases[key]:.2f} s" for key in ("imports", "config", "build", "loop", "save", "report")) + " |")
    lines += [
        "",
        ("CPU times are the child's user + system time (`os.wait4`): other processes on a shared machine stretch "
         f"wall-clock times far more than CPU times. {conditions_text(payload)}. Reproduce: `{payload['command']}`."),
        "",
    ]
    if payload.get("note"):
        lines[-1:-1] = ["", f"Note: {payload['note']}."]
    return "\n".join(lines)


def phase_breakdown(paths: dict, env: dict[str, str], steps: int) -> dict[str, float]:
    timings, config_file = paths["work"] / "phases.json", paths["work"] / "config-phases.yaml"
    config_file.write_text(grpokit_yaml(paths["data"], {**paths["settings"], "max_steps": steps}, paths["work"] / "phases"))
    run_child([sys.executable, __file__, "--child-phases", str(config_file), str(timings)], env, paths["work"])
    marks = json.loads(timings.read_text())
    return {
        "imports": marks["imported"] - marks["start"],
        "config": marks["config"] - marks["imported"],
        "build": marks["train_begin"] - marks["config"],
        "loop": marks["train_end"] - marks["train_begin"],
        "save": marks["saved"] - marks["train_end"],
        "report": marks["report"] - marks["saved"],
    }


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", type=int, default=10, help="steps of the short runs (default 10)")
    parser.add_argument("--long", type=int, default=80, help="steps of the long runs (default 80)")
    parser.add_argument("--repeats", type=int, default=5, help="alternating rounds, each: both sides, both lengths (default 5)")
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of every child (1: steadier on a shared machine)")
    parser.add_argument("--no-phases", action="store_true", help="skip the phase breakdown run")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 rounds of 2 and 4 steps, no phases, into results/quick/")
    parser.add_argument("--out", type=Path, default=None, help="results folder (default benchmarks/results/)")
    parser.add_argument("--resummarize", type=Path, help="recompute the summary and tables of an existing results file from its runs")
    parser.add_argument("--child-trl", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--child-phases", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_trl:
        return child_plain_trl(*args.child_trl)
    if args.child_phases:
        return child_grpokit_phases(*args.child_phases)
    if args.resummarize:
        payload = json.loads(args.resummarize.read_text(encoding="utf-8"))
        arguments = payload["arguments"]
        payload["summary"] = summarize(payload["runs"], arguments["short"], arguments["long"])
        return write_results(payload, args.out or args.resummarize.parent)
    if args.quick:
        args.short, args.long, args.repeats, args.no_phases = 2, 4, 2, True
        args.out = args.out or RESULTS_DIR / "quick"

    from grpokit.commands.demo import write_training_problems
    from grpokit.model.builtin import resolve_model_path

    work = Path(tempfile.mkdtemp(prefix="grpokit-overhead-"))
    paths = {"work": work, "data": write_training_problems(work / "train.jsonl", 2000, seed=0), "settings": demo_trl_settings()}
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(args.threads),
        "TOKENIZERS_PARALLELISM": "false",
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TINY_MODEL_PATH": str(resolve_model_path("builtin:tiny")),
        "HF_DATASETS_CACHE": str(work / "hf-cache"),
    }
    load_before = load_average()
    runs = []
    try:
        for repeat in range(args.repeats):
            order = KINDS if repeat % 2 == 0 else KINDS[::-1]
            for steps in (args.short, args.long):
                for kind in order:
                    runs.append(measure(kind, steps, paths, env, repeat))
                    print(json.dumps(runs[-1]), flush=True)
        phases = None if args.no_phases else phase_breakdown(paths, env, args.long)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    payload = {
        "benchmark": "overhead",
        **invocation("overhead.py", argv, {k: v for k, v in vars(args).items() if not k.startswith("child")}),
        "machine": machine(),
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "summary": summarize(runs, args.short, args.long),
        "phases": phases,
        "runs": runs,
    }
    write_results(payload, args.out or RESULTS_DIR)


def write_results(payload: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "overhead.json").write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    (out / "overhead.md").write_text(markdown(payload), encoding="utf-8")
    print(markdown(payload))


if __name__ == "__main__":
    main()
