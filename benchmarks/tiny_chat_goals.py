"""Are the two demo goals of `builtin:tiny-chat` reachable with plain TRL? Before/after figures at seed 0.

    .venv/bin/python benchmarks/tiny_chat_goals.py --task tools [--repeats 2] [--threads 1]
    .venv/bin/python benchmarks/tiny_chat_goals.py --task aws-sample [--quant 4bit-bf16] [--repeats 2]

Plain `trl.GRPOTrainer` (nothing from grpokit's recipe: only the built-in model, its task modules and
grpokit's reward functions, which follow TRL's contract), from `builtin:tiny-chat`, at seed 0:

- `tools` (issue 17): 3-digit multiplication with the `multiply` tool in TRL's tool loop, reward 1.0
  for an exact final answer. Goal: held-out exact-answer accuracy up by at least 25 points within 5
  minutes of training on 2 idle CPU cores.
- `aws-sample` (issue 18): the AWS sample's layout and its three rewards (ROUGE-L precision against
  `answer` without stemming, the one-sided length reward `min(len + 1, 512) / 512`, the format reward)
  with TRL 0.17.0's defaults the converted sample config pins (beta 0.04, loss bnpo, 8 generations,
  temperature 0.9, max_completion_length 256), the sample's batch (4 x 2 accumulation) and LoRA (r 8,
  alpha 16, dropout 0.1, all linear layers), optionally on a 4-bit NF4 base (bitsandbytes' CPU
  backend). Goal: held-out format reward and ROUGE-L precision visibly up within 5 minutes.

Held-out figures: `heldout_problems(64)` of each task, greedy (1 sample) and sampled (4 samples at
the training temperature, seed 0). Training time is the process's CPU time (`time.process_time`):
on a machine shared with other work, wall time says more about the neighbours than about the run.
With one thread, CPU time is close to the wall time the same run takes on an idle machine.

Writes benchmarks/results/tiny_chat_goals_<task>.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

import torch
import transformers
import trl

from grpokit.model.builtin import resolve_model_path
from grpokit.tasks import format_task, tool_task

RESULTS_DIR = Path(__file__).resolve().parent / "results"
SEED = 0
HELDOUT = 64
SAMPLES = 4
# GRPOConfig fields per task (use_cpu, bf16=False, seed, logging and saving are added below).
SETTINGS = {
    "tools": {
        "max_steps": 100,
        "learning_rate": 1e-4,
        "lr_scheduler_type": "constant",
        "per_device_train_batch_size": 16,
        "num_generations": 8,
        "max_completion_length": 64,
        "max_tool_calling_iterations": 1,
        "beta": 0.0,
        "temperature": 1.0,
    },
    "aws-sample": {
        "max_steps": 50,
        "learning_rate": 1e-3,
        "per_device_train_batch_size": 4,
        "gradient_accumulation_steps": 2,
        "num_generations": 8,
        "max_completion_length": 256,
        "beta": 0.04,
        "loss_type": "bnpo",
        "scale_rewards": "group",
        "temperature": 0.9,
    },
}
LORA = {"r": 8, "lora_alpha": 16, "lora_dropout": 0.1, "target_modules": "all-linear", "task_type": "CAUSAL_LM"}


def exact_answer(prompts, completions, answer, **kwargs) -> list[float]:
    """1.0 when the final answer's last number is the product (`tool_task.is_correct`)."""
    return [float(tool_task.is_correct(completion, reference)) for completion, reference in zip(completions, answer)]


def load_model(quant: str):
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    path = resolve_model_path("builtin:tiny-chat")
    if quant == "none":
        return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    from peft import prepare_model_for_kbit_training

    compute_dtype = torch.bfloat16 if quant == "4bit-bf16" else torch.float32
    quantization = BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=compute_dtype
    )
    model = AutoModelForCausalLM.from_pretrained(path, quantization_config=quantization, device_map="cpu", dtype=compute_dtype)
    return prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)


def heldout_figures(task: str, model, tokenizer, temperature: float) -> dict[str, float]:
    sampled = {"num_samples": SAMPLES, "temperature": temperature, "seed": SEED}
    if task == "tools":
        problems = tool_task.heldout_problems(HELDOUT)
        greedy = tool_task.measure_tool_use(model, tokenizer, problems)
        sample = tool_task.measure_tool_use(model, tokenizer, problems, **sampled)
        return {
            "greedy_accuracy": greedy.accuracy, "greedy_tool_call_rate": greedy.tool_call_rate,
            "sampled_accuracy": sample.accuracy, "sampled_tool_call_rate": sample.tool_call_rate,
            "sampled_tool_failure_rate": sample.tool_failure_rate,
        }  # fmt: skip
    problems = format_task.heldout_problems(HELDOUT)
    greedy = format_task.measure_format(model, tokenizer, problems)
    sample = format_task.measure_format(model, tokenizer, problems, **sampled)
    return {
        "greedy_format": greedy.format_reward, "greedy_rouge_l_precision": greedy.rouge_l_precision,
        "sampled_format": sample.format_reward, "sampled_rouge_l_precision": sample.rouge_l_precision,
        "sampled_mean_length": sample.mean_length,
    }  # fmt: skip


def run_once(task: str, settings: dict, quant: str) -> dict:
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("builtin:tiny-chat"))
    model = load_model(quant if task == "aws-sample" else "none")
    before = heldout_figures(task, model, tokenizer, settings["temperature"])
    per_step = settings["per_device_train_batch_size"] * settings.get("gradient_accumulation_steps", 1)
    num_rows = settings["max_steps"] * per_step // settings["num_generations"] + 8
    if task == "tools":
        rows = [problem.row() for problem in tool_task.make_problems(num_rows, seed=SEED)]
        rewards, extra = [exact_answer], {"tools": list(tool_task.TOOLS)}
    else:
        from grpokit.rewards.length import length_reward

        rows = [problem.row() for problem in format_task.make_problems(num_rows, seed=SEED)]
        rouge, tag_format = format_task.sample_rewards()
        length = length_reward(target_length=512, penalize_longer=False, offset=1)
        rewards, extra = [rouge, length, tag_format], {"peft_config": LoraConfig(**LORA)}
    with tempfile.TemporaryDirectory() as output_dir:
        args = GRPOConfig(
            output_dir=output_dir, use_cpu=True, bf16=False, seed=SEED, logging_steps=1, save_strategy="no",
            report_to=[], disable_tqdm=True, **settings,
        )  # fmt: skip
        trainer = GRPOTrainer(
            model=model, reward_funcs=rewards, args=args, train_dataset=Dataset.from_list(rows),
            processing_class=tokenizer, **extra,
        )  # fmt: skip
        cpu_started, wall_started = time.process_time(), time.perf_counter()
        trainer.train()
        cpu_seconds, wall_seconds = time.process_time() - cpu_started, time.perf_counter() - wall_started
    after = heldout_figures(task, trainer.model, tokenizer, settings["temperature"])
    logs = [entry for entry in trainer.state.log_history if "reward" in entry]
    return {
        "steps": trainer.state.global_step,
        "train_cpu_seconds": round(cpu_seconds, 1),
        "train_wall_seconds": round(wall_seconds, 1),
        "before": before,
        "after": after,
        "first_step_rewards": {k: v for k, v in logs[0].items() if k.startswith(("reward", "tools/"))},
        "last_step_rewards": {k: v for k, v in logs[-1].items() if k.startswith(("reward", "tools/"))},
    }


def write_results(task: str, quant: str, threads: int, settings: dict, runs: list[dict]) -> None:
    RESULTS_DIR.mkdir(exist_ok=True)
    record = {
        "task": task, "quant": quant if task == "aws-sample" else "none", "threads": threads, "settings": settings,
        "load_average": os.getloadavg(), "platform": platform.platform(), "torch": torch.__version__,
        "transformers": transformers.__version__, "trl": trl.__version__, "runs": runs,
    }  # fmt: skip
    (RESULTS_DIR / f"tiny_chat_goals_{task}.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    keys = list(runs[0]["before"])
    lines = [
        f"# builtin:tiny-chat, {task} (plain TRL {trl.__version__}, seed {SEED}, {threads} thread(s), quant {record['quant']})",
        "",
        f"Load average while measuring: {', '.join(f'{x:.1f}' for x in record['load_average'])}.",
        "",
        "| run | steps | train CPU s | train wall s | " + " | ".join(keys) + " |",
        "|---|---|---|---|" + "---|" * len(keys),
    ]
    for number, run in enumerate(runs, start=1):
        cells = [f"{run['before'][k]:.3f} -> {run['after'][k]:.3f}" for k in keys]
        lines.append(
            f"| {number} | {run['steps']} | {run['train_cpu_seconds']} | {run['train_wall_seconds']} | " + " | ".join(cells) + " |"
        )
    (RESULTS_DIR / f"tiny_chat_goals_{task}.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=sorted(SETTINGS), required=True)
    parser.add_argument("--repeats", type=int, default=2, help="identical runs, to show seed 0 repeats itself")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (results depend on it)")
    parser.add_argument("--quant", choices=["none", "4bit-bf16", "4bit-fp32"], default="4bit-bf16",
                        help="aws-sample only: LoRA on the float32 model, or on a 4-bit NF4 base computing in bf16 / fp32")  # fmt: skip
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a GRPOConfig field")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    settings = dict(SETTINGS[args.task])
    for item in args.set:
        key, value = item.split("=", 1)
        try:
            settings[key] = json.loads(value)
        except json.JSONDecodeError:
            settings[key] = value  # a plain string: lr_scheduler_type=cosine
    runs = []
    for number in range(1, args.repeats + 1):
        runs.append(run_once(args.task, settings, args.quant))
        print(f"run {number}: {json.dumps(runs[-1])}", flush=True)
    write_results(args.task, args.quant, args.threads, settings, runs)


if __name__ == "__main__":
    main()
