"""How long does a bad config take to report? `grpokit validate` against `trl grpo`, same bad files.

Issue 12's target: a YAML error, a missing file and an unknown key are reported in under 1.5 s. For
each kind of bad config, both commands run in a fresh process on the same file, alternating which
goes first, `--repeats` times; the figure is the wall time from start to exit, as the parent sees
it. The baseline is TRL's own CLI (`trl grpo --config FILE`), which parses the same YAML with its
`TrlParser` after importing torch and transformers; the script checks that each command exits with
an error and says so in its output, so neither side is timed on a run that went further.

Writes benchmarks/results/startup_errors.json (every run) and startup_errors.md (the table).

    .venv/bin/python benchmarks/startup_errors.py            # 5 alternating pairs per case: about 3 minutes
    .venv/bin/python benchmarks/startup_errors.py --repeats 9
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parent / "results"
BIN = Path(sys.executable).parent
TARGET_SECONDS = 1.5
GOOD = "model_id: builtin:tiny\ntrain_dataset_path: train.jsonl\nlearning_rate: 1.0e-5\n"
CASES = {
    # name: (file content or None for a missing file, what grpokit's message says)
    "YAML syntax error": (GOOD + "max_steps: [2\n", "not valid YAML"),
    "missing config file": (None, "config file not found"),
    "unknown key": (GOOD + "learnin_rate: 0.1\n", "unknown config key"),
    "key written twice": (GOOD + "learning_rate: 0.5\n", "written twice"),
    "not UTF-8": ((GOOD + "system_prompt: caf\xe9\n").encode("latin-1"), "not UTF-8"),
}


def timed(command: list[str], cwd: Path) -> tuple[float, int, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    started = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False)
    return time.perf_counter() - started, result.returncode, result.stdout + result.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    runs = []
    with tempfile.TemporaryDirectory(prefix="grpokit-startup-") as work:
        workdir = Path(work)
        (workdir / "train.jsonl").write_text('{"prompt": "1+1=", "answer": "2"}\n')
        for name, (content, says) in CASES.items():
            path = workdir / f"{abs(hash(name))}.yaml"
            if isinstance(content, bytes):
                path.write_bytes(content)
            elif content is not None:
                path.write_text(content, encoding="utf-8")
            commands = {
                "grpokit validate": [str(BIN / "grpokit"), "validate", str(path)],
                "trl grpo": [str(BIN / "trl"), "grpo", "--config", str(path)],
            }
            for repeat in range(args.repeats):
                order = list(commands) if repeat % 2 == 0 else list(reversed(commands))
                for tool in order:
                    seconds, code, output = timed(commands[tool], workdir)
                    reported = code != 0 and (says in output if tool == "grpokit validate" else True)
                    runs.append({"case": name, "tool": tool, "seconds": seconds, "exit_code": code, "reported": reported})
                    print(f"{name:22s} {tool:17s} {seconds:6.2f} s exit {code}", flush=True)
    load_after = os.getloadavg()[0]
    rows = []
    for name in CASES:
        medians = {
            tool: statistics.median(r["seconds"] for r in runs if r["case"] == name and r["tool"] == tool)
            for tool in ("grpokit validate", "trl grpo")
        }
        reported = all(r["reported"] for r in runs if r["case"] == name and r["tool"] == "grpokit validate")
        rows.append({"case": name, **medians, "grpokit_reported": reported})
    payload = {
        "runs": runs,
        "medians": rows,
        "target_seconds": TARGET_SECONDS,
        "repeats": args.repeats,
        "load_average": [load_before, load_after],
        "machine": f"{os.cpu_count()} CPU cores ({platform.machine()}), Python {platform.python_version()}",
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "startup_errors.json").write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    heading = (
        f"Seconds from start to exit when the config is bad: median of {args.repeats} runs each, alternating; "
        f"{payload['machine']}. Target: under {TARGET_SECONDS} s."
    )
    lines = [
        heading,
        "",
        "| bad config | grpokit validate | trl grpo (exit codes seen) | grpokit's message says it |",
        "|---|---:|---:|---|",
    ]
    for row in rows:
        codes = sorted({r["exit_code"] for r in runs if r["case"] == row["case"] and r["tool"] == "trl grpo"})
        lines.append(
            f"| {row['case']} | {row['grpokit validate']:.2f} | {row['trl grpo']:.2f} ({', '.join(map(str, codes))}) "
            f"| {'yes' if row['grpokit_reported'] else 'NO'} |"
        )
    footer = (
        f"Load average (1 min) {load_before:.1f} at start, {load_after:.1f} at end. "
        "Produced by `benchmarks/startup_errors.py`."
    )
    lines += ["", footer]
    (args.out / "startup_errors.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
