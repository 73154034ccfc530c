"""Where a grpokit training step's CPU goes, against plain TRL's step at the same settings.

    .venv/bin/python benchmarks/step_profile.py              # 3 rounds x 2 sides x 40 steps: about 5 minutes
    .venv/bin/python benchmarks/step_profile.py --quick      # smoke run (1 round of 4 steps) into results/quick/

Both sides are `benchmarks/overhead.py`'s: `grpokit.trainer.train()` with the demo's settings (what
`grpokit train` runs after loading the config, examples/demo.yaml's `log_completions_every` included),
and the plain TRL script, on the same 2,000 problems, one intra-op thread, each run a fresh process,
the side going first alternating from round to round. In each child the same instruments are
installed before the trainer is built:

- the loop: process CPU seconds (every thread) and wall seconds from `on_train_begin` to `on_train_end`,
  and each step's CPU and wall (from one `on_step_end` to the next);
- the main thread's CPU (`time.thread_time`) spent in every callback, per callback and event
  (`CallbackHandler.call_event` is timed around each callback it calls);
- the main thread's CPU in GRPOTrainer's phases: `_generate_and_score_completions` (of which
  `_generate`: sampling, and `_calculate_rewards`: the reward functions and their wrappers), the rest
  of `training_step` (the loss forward and backward), and `Trainer.log` (TRL's metric averaging);
- other threads: the loop's process CPU minus the main thread's.

Per step, in milliseconds of CPU: each bucket for each side (median over rounds) and grpokit minus
TRL; per round: the per-step CPU and wall ratios (the first step left out). Writes
benchmarks/results/step_profile.json (arguments, machine, load average, every run) and step_profile.md.
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
from collections import defaultdict
from pathlib import Path

from benchlib import conditions_text, invocation, load_average, machine, paired, spread_text
from overhead import demo_trl_settings, grpokit_yaml, plain_trl_trainer

RESULTS_DIR = Path(__file__).resolve().parent / "results"
KINDS = ("plain TRL", "grpokit")
PHASES = ("training_step", "_generate_and_score_completions", "_generate", "_calculate_rewards", "log")

# ----------------------------------------------------------------------------- the instruments (in the child)


class Instruments:
    """CPU seconds of the main thread per callback event and per trainer phase, and per-step process CPU and wall."""

    def __init__(self) -> None:
        self.callbacks: dict[str, float] = defaultdict(float)  # "Class.event" -> main-thread CPU s
        self.phases: dict[str, float] = defaultdict(float)
        self.step_cpu: list[float] = []
        self.step_wall: list[float] = []
        self.loop: dict[str, float] = {}
        self._depth: dict[str, int] = defaultdict(int)

    def install(self) -> None:
        from transformers import Trainer
        from transformers.trainer_callback import CallbackHandler
        from trl import GRPOTrainer

        instruments = self

        def call_event(handler, event, args, state, control, **kwargs):
            for callback in handler.callbacks:
                started = time.thread_time()
                result = getattr(callback, event)(
                    args, state, control, model=handler.model, processing_class=handler.processing_class,
                    optimizer=handler.optimizer, lr_scheduler=handler.lr_scheduler,
                    train_dataloader=handler.train_dataloader, eval_dataloader=handler.eval_dataloader, **kwargs,
                )  # fmt: skip
                instruments.callbacks[f"{type(callback).__name__}.{event}"] += time.thread_time() - started
                if result is not None:
                    control = result
            return control

        CallbackHandler.call_event = call_event  # the same loop as transformers 5.23.0's, timed per callback
        for owner, name in [(GRPOTrainer, phase) for phase in PHASES[:4]] + [(Trainer, "log"), (GRPOTrainer, "log")]:
            if name in vars(owner):
                setattr(owner, name, self._timed(name, vars(owner)[name]))

    def _timed(self, name: str, method):
        instruments = self

        def timed(*args, **kwargs):
            instruments._depth[name] += 1  # GRPOTrainer.log calls Trainer.log: count the outer call only
            started = time.thread_time()
            try:
                return method(*args, **kwargs)
            finally:
                instruments._depth[name] -= 1
                if instruments._depth[name] == 0:
                    instruments.phases[name] += time.thread_time() - started

        return timed

    def clock(self):
        from transformers import TrainerCallback

        instruments = self

        class StepClock(TrainerCallback):
            def on_train_begin(self, args, state, control, **kwargs):
                self.begin = self.last = (time.process_time(), time.perf_counter(), time.thread_time())

            def on_step_end(self, args, state, control, **kwargs):
                now = (time.process_time(), time.perf_counter(), time.thread_time())
                instruments.step_cpu.append(now[0] - self.last[0])
                instruments.step_wall.append(now[1] - self.last[1])
                self.last = now

            def on_train_end(self, args, state, control, **kwargs):
                now = (time.process_time(), time.perf_counter(), time.thread_time())
                instruments.loop = {key: now[i] - self.begin[i] for i, key in enumerate(("cpu_s", "wall_s", "main_thread_cpu_s"))}

        return StepClock()

    def record(self) -> dict:
        return {
            "loop": self.loop,
            "step_cpu_s": self.step_cpu,
            "step_wall_s": self.step_wall,
            "phases": dict(self.phases),
            "callbacks": dict(self.callbacks),
        }


def child(kind: str, data_file: str, output_dir: str, settings_json: str, record_file: str) -> None:
    instruments = Instruments()
    settings = json.loads(settings_json)
    if kind == "grpokit":
        from grpokit.config import load_config
        from grpokit.trainer import train

        config_file = Path(output_dir).with_suffix(".yaml")
        config_file.write_text(grpokit_yaml(Path(data_file), settings, Path(output_dir)))
        config = load_config(str(config_file))
        instruments.install()
        train(config, extra_callbacks=[instruments.clock()])  # the clock first: it tiles the steps
    else:
        instruments.install()
        trainer = plain_trl_trainer(data_file, output_dir, settings, callbacks=[])
        trainer.callback_handler.callbacks.insert(0, instruments.clock())  # first, as on grpokit's side
        trainer.train()
        trainer.save_model(output_dir)
    Path(record_file).write_text(json.dumps(instruments.record()))


# ----------------------------------------------------------------------------- the parent


def run(kind: str, round_: int, steps: int, paths: dict, env: dict) -> dict:
    import subprocess

    out = paths["work"] / f"{kind.replace(' ', '-')}-{round_}"
    record = paths["work"] / f"record-{kind.replace(' ', '-')}-{round_}.json"
    settings = json.dumps({**paths["settings"], "max_steps": steps})
    command = [sys.executable, __file__, "--child", kind, str(paths["data"]), str(out), settings, str(record)]
    log = paths["work"] / f"child-{kind.replace(' ', '-')}-{round_}.log"
    with log.open("w") as output:
        finished = subprocess.run(command, env=env, cwd=paths["work"], stdout=output, stderr=subprocess.STDOUT, check=False)
    if finished.returncode != 0:
        raise RuntimeError(f"{kind} child failed ({finished.returncode}):\n{log.read_text()[-3000:]}")
    shutil.rmtree(out, ignore_errors=True)
    return {"kind": kind, "round": round_, "steps": steps, **json.loads(record.read_text())}


def buckets(run_: dict) -> dict[str, float]:
    """Per-step CPU milliseconds of one run, in buckets that tile the loop's process CPU."""
    steps, phases, loop = run_["steps"], run_["phases"], run_["loop"]
    generate_and_score = phases.get("_generate_and_score_completions", 0.0)
    generation, rewards = phases.get("_generate", 0.0), phases.get("_calculate_rewards", 0.0)
    callbacks = sum(run_["callbacks"].values())
    logging = phases.get("log", 0.0)
    training_step = phases.get("training_step", 0.0)
    values = {
        "generation (_generate)": generation,
        "rewards (_calculate_rewards, wrappers included)": rewards,
        "rest of _generate_and_score_completions": generate_and_score - generation - rewards,
        "loss forward + backward (rest of training_step)": training_step - generate_and_score,
        "Trainer.log (TRL's metric averaging)": logging,
        "callbacks (all, main thread)": callbacks,
        "rest of the loop (data, clipping, optimizer, scheduler)": loop["main_thread_cpu_s"] - training_step - callbacks - logging,
        "other threads": loop["cpu_s"] - loop["main_thread_cpu_s"],
    }
    return {key: 1000 * value / steps for key, value in values.items()}


def callback_buckets(run_: dict) -> dict[str, float]:
    """Per-step main-thread CPU milliseconds of each callback class (all its events)."""
    per_class: dict[str, float] = defaultdict(float)
    for key, seconds in run_["callbacks"].items():
        per_class[key.split(".")[0]] += seconds
    return {name: 1000 * seconds / run_["steps"] for name, seconds in per_class.items()}


def summarize(runs: list[dict]) -> dict:
    rounds = sorted({run_["round"] for run_ in runs})
    by = {(run_["kind"], run_["round"]): run_ for run_ in runs}
    step_cpu = {key: statistics.median(run_["step_cpu_s"][1:]) for key, run_ in by.items()}
    step_wall = {key: statistics.median(run_["step_wall_s"][1:]) for key, run_ in by.items()}
    loop_cpu = {key: run_["loop"]["cpu_s"] for key, run_ in by.items()}

    def ratio(values: dict) -> dict:
        return paired([values["grpokit", r] / values["plain TRL", r] for r in rounds])

    def medians(table) -> dict:
        names = list(dict.fromkeys(name for run_ in runs for name in table(run_)))
        return {
            kind: {name: round(statistics.median(table(by[kind, r]).get(name, 0.0) for r in rounds), 3) for name in names}
            for kind in KINDS
        }

    return {
        "step_cpu_ratio": ratio(step_cpu),
        "step_wall_ratio": ratio(step_wall),
        "loop_cpu_ratio": ratio(loop_cpu),
        "step_cpu_ms": {kind: round(1000 * statistics.median(step_cpu[kind, r] for r in rounds), 2) for kind in KINDS},
        "step_wall_ms": {kind: round(1000 * statistics.median(step_wall[kind, r] for r in rounds), 2) for kind in KINDS},
        "buckets_ms_per_step": medians(buckets),
        "callbacks_ms_per_step": medians(callback_buckets),
    }


def markdown(payload: dict) -> str:
    summary, arguments = payload["summary"], payload["arguments"]
    lines = [
        (f"A grpokit training step against plain TRL's at identical settings (examples/demo.yaml's, {arguments['steps']} "
         f"steps, OMP_NUM_THREADS={arguments['threads']}), {arguments['rounds']} rounds of fresh processes, the side going "
         "first alternating. Per round: grpokit's median step (first step left out) over TRL's; median over rounds (min to max)."),
        "",
        "| per step | plain TRL | grpokit | grpokit vs TRL |",
        "|---|---:|---:|---:|",
        f"| process CPU (ms) | {summary['step_cpu_ms']['plain TRL']:.1f} | {summary['step_cpu_ms']['grpokit']:.1f} | {spread_text(summary['step_cpu_ratio'])} |",
        f"| wall (ms) | {summary['step_wall_ms']['plain TRL']:.1f} | {summary['step_wall_ms']['grpokit']:.1f} | {spread_text(summary['step_wall_ratio'])} |",
        f"| whole loop, process CPU | | | {spread_text(summary['loop_cpu_ratio'])} |",
        "",
        "Where the loop's CPU goes, milliseconds per step (medians over rounds; the buckets tile the loop's process CPU, first step included):",
        "",
        "| bucket | plain TRL | grpokit | grpokit - TRL |",
        "|---|---:|---:|---:|",
    ]
    table = summary["buckets_ms_per_step"]
    for name in table["grpokit"]:
        theirs, ours = table["plain TRL"].get(name, 0.0), table["grpokit"][name]
        lines.append(f"| {name} | {theirs:.2f} | {ours:.2f} | {ours - theirs:+.2f} |")
    lines += ["", "Callbacks, main-thread CPU milliseconds per step (all events; medians over rounds):", "",
              "| callback | plain TRL | grpokit |", "|---|---:|---:|"]
    callbacks = summary["callbacks_ms_per_step"]
    names = sorted(callbacks["grpokit"], key=lambda name: -max(callbacks["grpokit"][name], callbacks["plain TRL"].get(name, 0)))
    for name in names:
        if name == "StepClock":
            continue
        lines.append(f"| {name} | {callbacks['plain TRL'].get(name, 0.0):.3f} | {callbacks['grpokit'][name]:.3f} |")
    lines += ["", f"{conditions_text(payload)}. Reproduce: `{payload['command']}`.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40, help="steps of every run (default 40)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds, each: both sides (default 3)")
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of every child (default 1)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 round of 4 steps, into results/quick/")
    parser.add_argument("--out", type=Path, default=None, help="results folder (default benchmarks/results/)")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(*args.child)
    if args.quick:
        args.steps, args.rounds = 4, 1
        args.out = args.out or RESULTS_DIR / "quick"

    from grpokit.commands.demo import write_training_problems
    from grpokit.model.builtin import resolve_model_path

    work = Path(tempfile.mkdtemp(prefix="grpokit-step-profile-"))
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
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]),
    }
    load_before = load_average()
    runs = []
    try:
        for round_ in range(args.rounds):
            for kind in KINDS if round_ % 2 == 0 else KINDS[::-1]:
                runs.append(run(kind, round_, args.steps, paths, env))
                print(kind, round_, json.dumps(runs[-1]["loop"]), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    payload = {
        "benchmark": "step_profile",
        **invocation("step_profile.py", argv, {k: v for k, v in vars(args).items() if k != "child"}),
        "machine": machine(),
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "summary": summarize(runs),
        "runs": runs,
    }
    out = args.out or RESULTS_DIR
    out.mkdir(parents=True, exist_ok=True)
    (out / "step_profile.json").write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    (out / "step_profile.md").write_text(markdown(payload), encoding="utf-8")
    print(markdown(payload))


if __name__ == "__main__":
    main()
