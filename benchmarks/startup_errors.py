"""How long does a bad config take to report, and is it reported? `grpokit validate` against `trl grpo`, same bad files.

    .venv/bin/python benchmarks/startup_errors.py            # 5 alternating pairs per case: about 4 minutes
    .venv/bin/python benchmarks/startup_errors.py --quick    # smoke run (1 pair per case) into results/quick/

Not the same work on both sides: `trl grpo --config FILE` is TRL's own command-line entry point, which
parses the same YAML with its `TrlParser` after importing torch and transformers; `grpokit validate`
is grpokit's checking command. Both are what a user runs first on a config file. Issue 12's target:
grpokit reports a YAML error, a missing file and an unknown key in under 1.5 s.

For each kind of bad config, both commands run in a fresh process on the same file, alternating
which goes first, `--repeats` times. Per run: the wall time from start to exit, as the parent sees
it, and how the run ended, judged the same way for both commands:

- `clean error`: a non-zero exit, no Python traceback, and one line of the output names the problem
  (each case's pattern below: the key, "not found", "UTF-8", ...);
- `traceback`: a non-zero exit with a Python traceback in the output;
- `other error`: a non-zero exit, no traceback, but no line names the problem (a different error);
- `no error`: exit 0.

"Reported" means a clean error. Seconds are paired per repeat: `trl grpo`'s time over grpokit's in
the same pair; the table shows the median over pairs and the min-max.

Writes benchmarks/results/startup_errors.json (arguments, machine, load average, every run) and
startup_errors.md (the table).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import conditions_text, invocation, load_average, machine, paired, spread_text

RESULTS_DIR = Path(__file__).resolve().parent / "results"
BIN = Path(sys.executable).parent
TARGET_SECONDS = 1.5
TOOLS = ("grpokit validate", "trl grpo")
GOOD = "model_id: builtin:tiny\ntrain_dataset_path: train.jsonl\nlearning_rate: 1.0e-5\n"
CASES = {
    # name: (file content, or None for a missing file; a pattern that a line naming the problem matches)
    "YAML syntax error": (GOOD + "max_steps: [2\n", r"yaml|line 5"),
    "missing config file": (None, r"not found|no such file"),
    "unknown key": (GOOD + "learnin_rate: 0.1\n", r"learnin_rate"),
    "key written twice": (GOOD + "learning_rate: 0.5\n", r"learning_rate.*(twice|duplicate)|(twice|duplicate).*learning_rate"),
    "not UTF-8": ((GOOD + "system_prompt: caf\xe9\n").encode("latin-1"), r"utf-?8"),
}
TRACEBACK = "Traceback (most recent call last)"


def outcome(exit_code: int, output: str, names_problem: str) -> str:
    """How a run ended: 'clean error', 'traceback', 'other error' or 'no error' (see the module docstring)."""
    if exit_code == 0:
        return "no error"
    if TRACEBACK in output:
        return "traceback"
    if any(re.search(names_problem, line, flags=re.IGNORECASE) for line in output.splitlines()):
        return "clean error"
    return "other error"


def timed(command: list[str], cwd: Path) -> tuple[float, int, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    started = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False)
    return time.perf_counter() - started, result.returncode, result.stdout + result.stderr


def write_case(workdir: Path, index: int, content) -> Path:
    path = workdir / f"case{index}.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content, encoding="utf-8")
    return path


def summarize(runs: list[dict]) -> list[dict]:
    rows = []
    for name in CASES:
        case = [r for r in runs if r["case"] == name]
        pairs = sorted({r["repeat"] for r in case})
        seconds = {(r["tool"], r["repeat"]): r["seconds"] for r in case}
        rows.append({
            "case": name,
            **{f"{tool} seconds": statistics.median(r["seconds"] for r in case if r["tool"] == tool) for tool in TOOLS},
            "trl_over_grpokit": paired([seconds[("trl grpo", i)] / seconds[("grpokit validate", i)] for i in pairs], 2),
            **{f"{tool} outcomes": sorted({r["outcome"] for r in case if r["tool"] == tool}) for tool in TOOLS},
            "trl grpo exit codes": sorted({r["exit_code"] for r in case if r["tool"] == "trl grpo"}),
        })  # fmt: skip
    return rows


def markdown(payload: dict) -> str:
    repeats = payload["arguments"]["repeats"]
    lines = [
        (f"Seconds from start to exit when the config is bad, and how the command ended; {repeats} alternating pairs "
         f"per case, median (min-max ratio over pairs). Not the same work: `trl grpo --config FILE` is TRL's command-line "
         f"entry point, `grpokit validate` grpokit's checking command. Target: grpokit under {TARGET_SECONDS} s with a "
         "clean error (a non-zero exit, no traceback, a line that names the problem)."),
        "",
        "| bad config | grpokit validate (s) | how it ended | trl grpo (s) | how it ended (exit codes) | trl grpo over grpokit |",
        "|---|---:|---|---:|---|---:|",
    ]
    for row in payload["summary"]:
        codes = ", ".join(map(str, row["trl grpo exit codes"]))
        lines.append(
            f"| {row['case']} | {row['grpokit validate seconds']:.2f} | {' / '.join(row['grpokit validate outcomes'])} "
            f"| {row['trl grpo seconds']:.2f} | {' / '.join(row['trl grpo outcomes'])} ({codes}) "
            f"| {spread_text(row['trl_over_grpokit'], '{:.1f}')} |"
        )
    lines += ["", f"{conditions_text(payload)}. Reproduce: `{payload['command']}`.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="alternating pairs per case (default 5)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 pair per case, into results/quick/")
    parser.add_argument("--out", type=Path, default=None, help="results folder (default benchmarks/results/)")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.out = 1, args.out or RESULTS_DIR / "quick"
    load_before = load_average()
    runs = []
    with tempfile.TemporaryDirectory(prefix="grpokit-startup-") as work:
        workdir = Path(work)
        (workdir / "train.jsonl").write_text('{"prompt": "1+1=", "answer": "2"}\n')
        for index, (name, (content, names_problem)) in enumerate(CASES.items()):
            path = write_case(workdir, index, content)
            commands = {
                "grpokit validate": [str(BIN / "grpokit"), "validate", str(path)],
                "trl grpo": [str(BIN / "trl"), "grpo", "--config", str(path)],
            }
            for repeat in range(args.repeats):
                for tool in TOOLS if repeat % 2 == 0 else TOOLS[::-1]:
                    seconds, code, output = timed(commands[tool], workdir)
                    ended = outcome(code, output, names_problem)
                    last_lines = [line for line in output.splitlines() if line.strip()][-3:]
                    runs.append({"case": name, "tool": tool, "repeat": repeat, "seconds": round(seconds, 3),
                                 "exit_code": code, "outcome": ended, "last_lines": last_lines})  # fmt: skip
                    print(f"{name:22s} {tool:17s} {seconds:6.2f} s exit {code} {ended}", flush=True)
    payload = {
        "benchmark": "startup_errors",
        **invocation("startup_errors.py", argv, vars(args)),
        "target_seconds": TARGET_SECONDS,
        "machine": machine(),
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "summary": summarize(runs),
        "runs": runs,
    }
    out = args.out or RESULTS_DIR
    out.mkdir(parents=True, exist_ok=True)
    (out / "startup_errors.json").write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    (out / "startup_errors.md").write_text(markdown(payload), encoding="utf-8")
    print(markdown(payload))


if __name__ == "__main__":
    main()
