"""QLoRA on the CPU: what a 4-bit GRPO step costs, against the unquantized run and plain TRL at the same settings.

    .venv/bin/python benchmarks/qlora_cpu.py                      # 3 rounds x 3 variants, 8 steps each: ~10 minutes
    .venv/bin/python benchmarks/qlora_cpu.py --rounds 5 --steps 10 --completion-tokens 128

Every variant trains `builtin:tiny` with the AWS sample's converted settings (`trl_defaults: 0.17.0`:
beta 0.04, so a reference forward each step; LoRA r 8 / alpha 16 / dropout 0.1 on all linear layers;
gradient checkpointing; 4 completions per device x 2 accumulation = one prompt x 8 completions a
step; temperature 0.2) and the same reward, with every completion exactly `--completion-tokens`
long (`min_new_tokens`, so the tiny model's early end-of-text does not shorten the work), one
intra-op thread:

- `lora`: grpokit, the base model unquantized (float32);
- `qlora`: grpokit, `load_in_4bit: true` (NF4, double quantization, float32 compute, float32 LoRA);
- `trl-qlora`: a plain TRL script a user would write for the same job (`BitsAndBytesConfig`,
  `device_map={"": "cpu"}`, `prepare_model_for_kbit_training`, `GRPOTrainer` with TRL's own
  handling: it casts a quantized model's LoRA weights to bfloat16); it imports nothing from grpokit.

Each round runs the three in a fresh process each, the order rotating from round to round.
Measured per step inside each child: CPU seconds (`time.process_time`, all threads) and wall
seconds, the first (warm-up) step left out. Reported: medians per variant and the paired ratios
qlora / lora and qlora / trl-qlora, round by round. CPU seconds depend little on other load on a
shared machine; wall seconds do. A last in-process profile (`--profile`) splits one qlora step by
function with cProfile.

Writes benchmarks/results/qlora_cpu.json and qlora_cpu.md.
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
VARIANTS = ("lora", "qlora", "trl-qlora")
REWARD_FILE = '''
def digits(prompts, completions, **kwargs):
    """The share of digits in each completion: cheap, identical on every side."""
    texts = [c if isinstance(c, str) else c[-1]["content"] for c in completions]
    return [sum(ch.isdigit() for ch in t) / max(len(t), 1) for t in texts]
'''


# ----------------------------------------------------------------------------- the children


class _StepClock:
    """A TrainerCallback (built lazily: transformers is imported in the child only) timing each optimizer step."""

    @staticmethod
    def make():
        from transformers import TrainerCallback

        class StepClock(TrainerCallback):
            def __init__(self) -> None:
                self.steps: list[dict[str, float]] = []

            def on_step_begin(self, args, state, control, **kwargs):
                self.started = (time.process_time(), time.perf_counter())

            def on_step_end(self, args, state, control, **kwargs):
                cpu, wall = self.started
                self.steps.append({"cpu": time.process_time() - cpu, "wall": time.perf_counter() - wall})

        return StepClock()


def child_grpokit(spec_file: str, timings_file: str) -> None:
    """grpokit's `train(config)`, with the step clock as an extra callback."""
    from grpokit.config import load_config
    from grpokit.trainer import train

    spec = json.loads(Path(spec_file).read_text())
    clock = _StepClock.make()
    train(load_config(data=spec["grpokit"]), extra_callbacks=[clock])
    Path(timings_file).write_text(json.dumps({"steps": clock.steps}))


def child_plain_trl(spec_file: str, timings_file: str) -> None:
    """The plain TRL QLoRA script a user would write for the same job on a CPU (no grpokit import)."""
    import importlib.util

    import torch
    from datasets import load_dataset
    from peft import LoraConfig, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig
    from trl import GRPOConfig, GRPOTrainer

    spec = json.loads(Path(spec_file).read_text())
    module_spec = importlib.util.spec_from_file_location("reward", spec["reward_file"])
    reward = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(reward)
    quantization = BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=torch.float32
    )
    model = AutoModelForCausalLM.from_pretrained(
        spec["model_path"], dtype=torch.float32, quantization_config=quantization, device_map={"": "cpu"}
    )
    args = GRPOConfig(**spec["trl_args"], output_dir=spec["output_dir"], report_to="none", save_strategy="no")
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=args.gradient_checkpointing)
    lora = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.1, target_modules="all-linear", bias="none", task_type="CAUSAL_LM")
    tokenizer = AutoTokenizer.from_pretrained(spec["model_path"])
    clock = _StepClock.make()
    trainer = GRPOTrainer(
        model=model, reward_funcs=reward.digits, args=args, processing_class=tokenizer,
        train_dataset=load_dataset("json", data_files=spec["data_file"], split="train"), peft_config=lora, callbacks=[clock],
    )  # fmt: skip
    trainer.train()
    Path(timings_file).write_text(json.dumps({"steps": clock.steps}))


# ----------------------------------------------------------------------------- the parent


def write_inputs(work: Path, steps: int, completion_tokens: int) -> dict:
    """The data, the reward file and the grpokit config every variant shares; the TRL args grpokit resolves."""
    from grpokit.config import load_config
    from grpokit.model.builtin import resolve_model_path

    rows = [{"prompt": f"{a}+{b}=", "answer": str(a + b)} for a in range(10, 60) for b in range(3)]
    data_file = work / "train.jsonl"
    data_file.write_text("".join(json.dumps(row) + "\n" for row in rows))
    reward_file = work / "reward.py"
    reward_file.write_text(REWARD_FILE)
    base = {
        "trl_defaults": "0.17.0", "model_id": "builtin:tiny", "train_dataset_path": str(data_file), "resume": "never",
        "rewards": [{"name": f"{reward_file}:digits"}], "use_lora": True, "lora_r": 8, "lora_alpha": 16,
        "lora_dropout": 0.1, "lora_target_modules": "all-linear", "max_steps": steps, "per_device_train_batch_size": 4,
        "gradient_accumulation_steps": 2, "num_generations": 8, "gradient_checkpointing": True, "temperature": 0.2,
        "max_completion_length": completion_tokens, "generation_kwargs": {"min_new_tokens": completion_tokens},
        "learning_rate": 2e-4, "save_strategy": "no", "logging_steps": 1, "seed": 0, "log_completions_every": 0,
        "system_metrics_interval": 0,
    }  # fmt: skip
    resolved = load_config(data={**base, "load_in_4bit": True})
    trl_args = {k: v for k, v in resolved.trl_args.items() if k not in ("save_strategy",)}
    return {"base": base, "trl_args": trl_args, "data_file": str(data_file), "reward_file": str(reward_file),
            "model_path": resolve_model_path("builtin:tiny")}  # fmt: skip


def run_variant(variant: str, inputs: dict, work: Path, env: dict[str, str], round_index: int) -> list[dict]:
    out = work / f"{variant}-{round_index}"
    spec = {
        "grpokit": {**inputs["base"], "output_dir": str(out), "load_in_4bit": variant == "qlora"},
        "trl_args": inputs["trl_args"], "data_file": inputs["data_file"], "reward_file": inputs["reward_file"],
        "model_path": inputs["model_path"], "output_dir": str(out),
    }  # fmt: skip
    spec_file, timings_file = work / f"spec-{variant}-{round_index}.json", work / f"timings-{variant}-{round_index}.json"
    spec_file.write_text(json.dumps(spec))
    flag = "--child-trl" if variant == "trl-qlora" else "--child-grpokit"
    log = work / f"{variant}-{round_index}.log"
    with log.open("w") as output:
        code = subprocess.call([sys.executable, __file__, flag, str(spec_file), str(timings_file)], env=env, cwd=work,
                               stdout=output, stderr=subprocess.STDOUT)  # fmt: skip
    if code != 0:
        raise RuntimeError(f"{variant} failed ({code}):\n{log.read_text()[-3000:]}")
    return json.loads(timings_file.read_text())["steps"]


def summarize(runs: list[dict]) -> dict:
    per_variant = {}
    for variant in VARIANTS:
        steps = [step for run in runs if run["variant"] == variant for step in run["steps"][1:]]  # warm-up step out
        per_variant[variant] = {
            "cpu_s": statistics.median(s["cpu"] for s in steps),
            "wall_s": statistics.median(s["wall"] for s in steps),
            "steps": len(steps),
        }
    ratios: dict[str, list[float]] = {"qlora/lora": [], "qlora/trl-qlora": []}
    for round_index in sorted({run["round"] for run in runs}):
        cpu = {
            run["variant"]: statistics.median(s["cpu"] for s in run["steps"][1:]) for run in runs if run["round"] == round_index
        }
        ratios["qlora/lora"].append(cpu["qlora"] / cpu["lora"])
        ratios["qlora/trl-qlora"].append(cpu["qlora"] / cpu["trl-qlora"])
    return {"variants": per_variant, "cpu_ratios_by_round": ratios, "cpu_ratio_medians": {k: statistics.median(v) for k, v in ratios.items()}}


def markdown(summary: dict, settings: dict) -> str:
    lines = [
        "# QLoRA on the CPU (`benchmarks/qlora_cpu.py`)",
        "",
        (
            f"{settings['rounds']} rounds, {settings['steps']} steps a run (first left out), completions of "
            f"{settings['completion_tokens']} tokens, {settings['threads']} thread(s); load average at start "
            f"{settings['load_start']}, at end {settings['load_end']}; {settings['machine']}."
        ),
        "",
        "| variant | CPU s / step (median) | wall s / step (median) | steps measured |",
        "|---|---|---|---|",
    ]
    for variant, row in summary["variants"].items():
        lines.append(f"| {variant} | {row['cpu_s']:.3f} | {row['wall_s']:.3f} | {row['steps']} |")
    lines += ["", "| paired CPU ratio | median | by round |", "|---|---|---|"]
    for name, values in summary["cpu_ratios_by_round"].items():
        lines.append(f"| {name} | {summary['cpu_ratio_medians'][name]:.2f} | {', '.join(f'{v:.2f}' for v in values)} |")
    return "\n".join(lines) + "\n"


def profile_one_step(inputs: dict, work: Path) -> str:
    """cProfile of a short qlora run in this process: where a 4-bit step's time goes."""
    import cProfile
    import io
    import pstats

    import torch

    from grpokit.config import load_config
    from grpokit.trainer import train

    torch.set_num_threads(1)
    config = load_config(data={**inputs["base"], "output_dir": str(work / "profile"), "load_in_4bit": True, "max_steps": 3})
    profiler = cProfile.Profile()
    profiler.enable()
    train(config)
    profiler.disable()
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(25)
    return text.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--completion-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--profile", action="store_true", help="also print a cProfile of a 3-step qlora run")
    parser.add_argument("--child-grpokit", nargs=2, metavar=("SPEC", "TIMINGS"), help=argparse.SUPPRESS)
    parser.add_argument("--child-trl", nargs=2, metavar=("SPEC", "TIMINGS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_grpokit:
        return child_grpokit(*args.child_grpokit)
    if args.child_trl:
        return child_plain_trl(*args.child_trl)

    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads),
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "disabled",
           "TOKENIZERS_PARALLELISM": "false"}  # fmt: skip
    settings = {"rounds": args.rounds, "steps": args.steps, "completion_tokens": args.completion_tokens,
                "threads": args.threads, "load_start": round(os.getloadavg()[0], 2),
                "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"}  # fmt: skip
    runs = []
    with tempfile.TemporaryDirectory(prefix="grpokit-qlora-bench-") as directory:
        work = Path(directory)
        inputs = write_inputs(work, args.steps, args.completion_tokens)
        for round_index in range(args.rounds):
            order = VARIANTS[round_index % 3 :] + VARIANTS[: round_index % 3]  # who goes first rotates
            for variant in order:
                steps = run_variant(variant, inputs, work, env, round_index)
                runs.append({"variant": variant, "round": round_index, "steps": steps})
                median = statistics.median(s["cpu"] for s in steps[1:])
                print(f"round {round_index} {variant}: {median:.3f} CPU s / step", flush=True)
        profile = profile_one_step(inputs, work) if args.profile else None
    settings["load_end"] = round(os.getloadavg()[0], 2)
    summary = summarize(runs)
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / "qlora_cpu.json").write_text(json.dumps({"settings": settings, "summary": summary, "runs": runs}, indent=1))
    table = markdown(summary, settings)
    (RESULTS_DIR / "qlora_cpu.md").write_text(table)
    print(table)
    if profile:
        print(profile)


if __name__ == "__main__":
    main()
