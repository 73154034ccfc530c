"""The README's performance figures, rendered from benchmarks/results/*.json so that they cannot drift.

    .venv/bin/python benchmarks/readme_figures.py           # rewrite the generated block of README.md
    .venv/bin/python benchmarks/readme_figures.py --check   # exit 1 when README.md differs from the results

The block between the markers below is this script's output and nothing else; `tests/test_docs.py`
fails when it differs from what the results files say. Run a benchmark, then this script. A results
file that is missing, or was written by an older version of its script, is shown as not measured,
with the command that measures it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from benchlib import bounds_spread_text, conditions_text, spread_text

RESULTS_DIR = Path(__file__).resolve().parent / "results"
README = Path(__file__).resolve().parents[1] / "README.md"
BEGIN = "<!-- BEGIN GENERATED: benchmarks/readme_figures.py -->\n"
END = "<!-- END GENERATED: benchmarks/readme_figures.py -->"
COMMANDS = {  # the default command of each script, shown when its results are missing
    "overhead": ".venv/bin/python benchmarks/overhead.py",
    "data_efficiency": ".venv/bin/python benchmarks/data_efficiency.py",
    "time_to_target": ".venv/bin/python benchmarks/time_to_target.py",
    "startup_errors": ".venv/bin/python benchmarks/startup_errors.py",
}
TITLES = {
    "overhead": "Overhead at identical settings: `grpokit train` against a plain TRL script doing the same job",
    "data_efficiency": "Compute where GRPO learns, at equal hyperparameters: grpokit's dynamic sampling and "
    "probe-filtered data against plain TRL",
    "time_to_target": "Hyperparameters compared, not tools: the demo settings against TRL's defaults and the AWS sample's",
    "startup_errors": "A bad config file: `grpokit validate` against `trl grpo` on the same file (not the same work)",
}


def load_results(name: str, results_dir: Path = RESULTS_DIR) -> dict | None:
    """A results file written by the current version of its script, or None."""
    path = results_dir / f"{name}.json"
    if not path.is_file():
        return None
    payload = json.loads(path.read_text(encoding="utf-8"))
    current = payload.get("benchmark") == name and all(key in payload for key in ("command", "machine", "summary"))
    return payload if current else None


def overhead_table(payload: dict) -> list[str]:
    from overhead import KINDS, ROWS, verdict, versus_text

    summary = payload["summary"]
    arguments = payload["arguments"]
    lines = [
        (f"{len(summary['rounds'])} rounds of fresh processes ({arguments['short']} and {arguments['long']} steps of "
        "examples/demo.yaml's settings, final model saved), the side going first alternating; \"grpokit vs TRL\" is "
        "paired: per round, grpokit's figure over (or minus) TRL's; median over rounds (min to max)."),
        "",
        "| | plain TRL | grpokit | grpokit vs TRL | target |",
        "|---|---:|---:|---:|---|",
    ]
    for label, measure, key, form in ROWS:
        stat = summary["comparison"][measure]
        theirs, ours = (form.format(summary["sides"][kind][key]) for kind in KINDS)
        lines.append(f"| {label} | {theirs} | {ours} | {versus_text(measure, stat)} | {verdict(measure, stat)} |")
    return lines


SAMPLING = {"demo": "temperature 1.0 (examples/demo.yaml)", "low-temperature": "temperature 0.2, top_p 0.9 (the AWS sample's)"}


def data_efficiency_table(payload: dict) -> list[str]:
    arguments, summary = payload["arguments"], payload["summary"]
    lines = [
        (f"Training CPU time for `builtin:tiny` to reach {arguments['target']} held-out accuracy, relative to plain TRL's "
        f"`GRPOTrainer` at the same settings and seed; paired per seed (seeds {arguments['seeds']}): median (min to max)."),
        "",
        ("| sampling | zero-spread groups at the start | `dynamic_sampling: true`: CPU time | its steps "
        "| on `grpokit probe --write-filtered` data: CPU time | with the probe's CPU time |"),
        "|---|---:|---:|---:|---:|---:|",
    ]
    for setting, variants in summary.items():
        share = payload.get("zero_spread_at_start", {}).get(setting)
        dynamic = variants["grpokit + dynamic sampling"]["vs_plain_trl"]
        probe = variants["grpokit, probe-filtered data"]["vs_plain_trl"]
        figures = [dynamic["cpu_seconds"], dynamic["steps"], probe["cpu_seconds"], probe["cpu_seconds_with_probe"]]
        lines.append(
            f"| {SAMPLING.get(setting, setting)} | {'-' if share is None else f'{share:.0%}'} | "
            + " | ".join(bounds_spread_text(figure) for figure in figures) + " |"
        )
    return lines


def time_to_target_table(payload: dict) -> list[str]:
    arguments, summary, runs = payload["arguments"], payload["summary"], payload["runs"]
    lines = [
        (f"Every run is TRL's `GRPOTrainer` loop; only the settings differ. Steps to {arguments['target']} held-out "
        f"accuracy within {arguments['max_steps']} steps, seeds {arguments['seeds']}; against the demo settings, paired "
        "per seed: median (min to max)."),
        "",
        "| settings | reached | vs demo settings: steps | training CPU time |",
        "|---|---|---:|---:|",
    ]
    for name, entry in summary.items():
        group = [r for r in runs if r["configuration"] == name]
        versus = entry["vs_demo_config"]
        steps, cpu = ("-", "-") if name == "grpokit demo config" else (
            bounds_spread_text(versus["steps"]), bounds_spread_text(versus["cpu_seconds"]))
        lines.append(f"| {name} | {sum(r['reached'] for r in group)}/{len(group)} | {steps} | {cpu} |")
    return lines


def startup_errors_table(payload: dict) -> list[str]:
    lines = [
        (f"Seconds from start to exit, median of {payload['arguments']['repeats']} alternating pairs; \"clean error\": a "
        f"non-zero exit, no traceback, a line that names the problem. Target: grpokit under {payload['target_seconds']} s."),
        "",
        "| bad config | grpokit validate | how it ended | target met | trl grpo (its time over grpokit's, paired) | how it ended |",
        "|---|---:|---|---|---:|---|",
    ]
    for row in payload["summary"]:
        met = row["grpokit validate seconds"] < payload["target_seconds"] and row["grpokit validate outcomes"] == ["clean error"]
        lines.append(
            f"| {row['case']} | {row['grpokit validate seconds']:.2f} s | {' / '.join(row['grpokit validate outcomes'])} "
            f"| {'yes' if met else '**no**'} | {row['trl grpo seconds']:.2f} s ({spread_text(row['trl_over_grpokit'], '{:.1f}')}) "
            f"| {' / '.join(row['trl grpo outcomes'])} |"
        )
    return lines


TABLES = {
    "overhead": overhead_table,
    "data_efficiency": data_efficiency_table,
    "time_to_target": time_to_target_table,
    "startup_errors": startup_errors_table,
}


def render(results_dir: Path = RESULTS_DIR) -> str:
    """The generated block: per benchmark its table, the machine and load, the command that reproduced it."""
    parts = []
    for name, table in TABLES.items():
        payload = load_results(name, results_dir)
        if payload is None:
            parts.append(f"**{TITLES[name]}**.\n\nNot measured with the current script yet: `{COMMANDS[name]}`.\n")
            continue
        parts.append(f"**{TITLES[name]}** ([results/{name}.md](benchmarks/results/{name}.md)).")
        lines = table(payload)
        note = f" Note: {payload['note']}." if payload.get("note") else ""
        lines += ["", f"Measured on {conditions_text(payload)}. Reproduce: `{payload['command']}`.{note}"]
        parts.append("\n" + "\n".join(lines) + "\n")
    return "\n".join(parts)


def readme_block(text: str) -> str:
    return text.split(BEGIN, 1)[1].split(END, 1)[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when README.md is out of date")
    args = parser.parse_args(argv)
    text = README.read_text(encoding="utf-8")
    generated = render()
    if args.check:
        if readme_block(text) != generated:
            print("README.md's performance figures differ from benchmarks/results: run benchmarks/readme_figures.py")
            return 1
        return 0
    before, rest = text.split(BEGIN, 1)
    README.write_text(before + BEGIN + generated + END + rest.split(END, 1)[1], encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
