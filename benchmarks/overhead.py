"""grpokit's overhead: `grpokit train` against a plain TRL script doing the same work at the same settings.

    .venv/bin/python benchmarks/overhead.py                  # 3 rounds x 2 lengths x 2 sides: about 6 minutes
    .venv/bin/python benchmarks/overhead.py --repeats 5 --short 10 --long 80 --threads 2

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

Reported per side: per-step CPU time, the slope of CPU over the step count between the short and the
long runs, and fixed CPU time, its intercept (everything that does not grow with steps: interpreter,
imports, config, data, model and trainer build, tracking set-up, final save, report, exit); per-step
wall time (median interval of the long runs, the warm-up step left out); fixed wall time (wall minus
training loop); peak RSS. Targets (issue 13): per-step time within 5% of TRL's, fixed overhead at
most 2 s above TRL's, peak RSS within 5%. A last run times grpokit's phases in one process
(`--no-phases` skips it).

Writes benchmarks/results/overhead.json and overhead.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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
    import re

    from datasets import load_dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    def exact_match(completions, answer, **kwargs):
        return [1.0 if (m := re.match(r"\s*([0-9]+)", c)) and m.group(1) == a else 0.0 for c, a in zip(completions, answer)]

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
    dataset = load_dataset("json", data_files=data_file, split="train")
    config = GRPOConfig(output_dir=f"{output_dir}/checkpoints", bf16=False, use_cpu=True, **json.loads(settings_json))
    trainer = GRPOTrainer(
        model=os.environ["TINY_MODEL_PATH"], reward_funcs=exact_match, args=config, train_dataset=dataset, callbacks=[timer]
    )
    trainer.train()
    trainer.save_model(output_dir)
    Path(timings_file).write_text(json.dumps({"intervals": timer.intervals}))


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


def _median(values: list[float]) -> float:
    return statistics.median(values)


def summarize(runs: list[dict], short: int, long: int) -> dict:
    """Per side: CPU per step and fixed CPU from the short and long runs (CPU = fixed + steps x per step);
    wall-clock per step, fixed wall and peak RSS from the long runs. Then grpokit against TRL."""
    summary: dict = {}
    for kind in KINDS:
        cpu = {n: _median([r["cpu_s"] for r in runs if r["kind"] == kind and r["steps"] == n]) for n in (short, long)}
        per_step_cpu = (cpu[long] - cpu[short]) / (long - short)
        longs = [r for r in runs if r["kind"] == kind and r["steps"] == long]
        summary[kind] = {
            "step_cpu_s": round(per_step_cpu, 5),
            "fixed_cpu_s": round(cpu[short] - short * per_step_cpu, 3),
            **{key: _spread([r[key] for r in longs]) for key in ("step_wall_s", "fixed_wall_s", "loop_s", "wall_s", "peak_rss_mb")},
        }
    ours, theirs = summary["grpokit"], summary["plain TRL"]
    summary["comparison"] = {
        "step_cpu_ratio": round(ours["step_cpu_s"] / theirs["step_cpu_s"], 4),
        "step_wall_ratio": round(ours["step_wall_s"]["median"] / theirs["step_wall_s"]["median"], 4),
        "fixed_cpu_extra_s": round(ours["fixed_cpu_s"] - theirs["fixed_cpu_s"], 3),
        "fixed_wall_extra_s": round(ours["fixed_wall_s"]["median"] - theirs["fixed_wall_s"]["median"], 3),
        "peak_rss_ratio": round(ours["peak_rss_mb"]["median"] / theirs["peak_rss_mb"]["median"], 4),
    }
    return summary


def _spread(values: list[float]) -> dict[str, float]:
    return {"median": round(_median(values), 4), "min": min(values), "max": max(values)}


def markdown(summary: dict, phases: dict | None, meta: dict) -> str:
    def cell(kind: str, key: str, form: str) -> str:
        value = summary[kind][key]
        if isinstance(value, dict):
            return f"{form.format(value['median'])} ({form.format(value['min'])}-{form.format(value['max'])})"
        return form.format(value)

    c = summary["comparison"]
    rows = [
        ("per-step CPU time (s; slope between the short and long runs)", "step_cpu_s", "{:.4f}", f"{c['step_cpu_ratio']:.3f}x", "within 5%"),
        ("per-step wall time (s; median of steps 2..N, long runs)", "step_wall_s", "{:.4f}", f"{c['step_wall_ratio']:.3f}x", "within 5%"),
        ("fixed CPU time (s; intercept)", "fixed_cpu_s", "{:.2f}", f"{c['fixed_cpu_extra_s']:+.2f} s", "at most +2 s"),
        ("fixed wall time (s; wall - training loop, long runs)", "fixed_wall_s", "{:.2f}", f"{c['fixed_wall_extra_s']:+.2f} s", "at most +2 s"),
        ("wall, process start to exit (s, long runs)", "wall_s", "{:.2f}", "", ""),
        ("peak RSS (MB, long runs)", "peak_rss_mb", "{:.0f}", f"{c['peak_rss_ratio']:.3f}x", "within 5%"),
    ]
    lines = [
        (f"`grpokit train` against a plain TRL script at identical settings (examples/demo.yaml's settings, "
        f"{meta['short']} and {meta['long']} steps, final model saved), {meta['repeats']} alternating rounds of fresh "
        f"processes; median (min-max); {meta['machine']}."),
        "",
        "| | plain TRL | grpokit | grpokit vs TRL | target |",
        "|---|---:|---:|---:|---|",
    ]
    for label, key, form, versus, target in rows:
        lines.append(f"| {label} | {cell('plain TRL', key, form)} | {cell('grpokit', key, form)} | {versus} | {target} |")
    if phases:
        lines += ["", "Where grpokit's time goes (one long run in one process, `grpokit train`'s steps):", ""]
        lines.append("| imports | config | build (data, model, trainer) | training loop | final save | report |")
        lines.append("|---:|---:|---:|---:|---:|---:|")
        lines.append("| " + " | ".join(f"{phases[key]:.2f} s" for key in ("imports", "config", "build", "loop", "save", "report")) + " |")
    lines += [
        "",
        ("CPU times are the child's user + system time (`os.wait4`); other processes on a shared machine stretch "
        "wall-clock times far more than CPU times, so on a busy machine compare the CPU rows. Load average (1 min) "
        f"{meta['load_average_start'][0]} at start, {meta['load_average_end'][0]} at end. Produced by "
        "`benchmarks/overhead.py`."),
        "",
    ]
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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", type=int, default=10, help="steps of the short runs")
    parser.add_argument("--long", type=int, default=50, help="steps of the long runs")
    parser.add_argument("--repeats", type=int, default=3, help="alternating rounds (each: both sides, both lengths)")
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of every child (1: steadier on a shared machine)")
    parser.add_argument("--no-phases", action="store_true", help="skip the phase breakdown run")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    parser.add_argument("--child-trl", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--child-phases", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_trl:
        return child_plain_trl(*args.child_trl)
    if args.child_phases:
        return child_grpokit_phases(*args.child_phases)

    import torch

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
    load_start = [round(x, 1) for x in os.getloadavg()]
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
    meta = {
        "short": args.short,
        "long": args.long,
        "repeats": args.repeats,
        "threads": args.threads,
        "machine": f"{os.cpu_count()} CPU cores ({platform.machine()}), OMP_NUM_THREADS={args.threads}, no GPU, "
        f"torch {torch.__version__}",
        "load_average_start": load_start,
        "load_average_end": [round(x, 1) for x in os.getloadavg()],
    }
    summary = summarize(runs, args.short, args.long)
    args.out.mkdir(parents=True, exist_ok=True)
    payload = {**meta, "summary": summary, "phases": phases, "runs": runs}
    (args.out / "overhead.json").write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    (args.out / "overhead.md").write_text(markdown(summary, phases, meta), encoding="utf-8")
    print(markdown(summary, phases, meta))


if __name__ == "__main__":
    main()
