"""Peak GPU memory and completion tokens/s of GRPO steps on a model shaped like Qwen2.5-0.5B.

Needs a CUDA GPU; downloads nothing. The model has Qwen2.5-0.5B's architecture with random weights
(built from a config, saved to a temporary directory so the 4-bit variants load through grpokit's
own QLoRA path); prompts are encoded with the built-in model's byte-level tokenizer. Each
variant runs in a fresh process, so one variant's allocations never count towards another's peak.

    python benchmarks/gpu_memory.py                      # LoRA / QLoRA x gradient checkpointing on / off
    python benchmarks/gpu_memory.py --full --steps 5     # also full fine-tuning in bfloat16
    python benchmarks/gpu_memory.py --json results.json

Numbers: `peak_gib` is torch.cuda.max_memory_allocated over the whole run (model, optimizer state,
generation, forward and backward); `completion_tok_s` is completion tokens generated per second of
training (generation + scoring + optimizer step), measured after one warm-up step.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Qwen2.5-0.5B (Qwen/Qwen2.5-0.5B config.json), written out so nothing is downloaded.
QWEN25_05B = {
    "hidden_size": 896,
    "intermediate_size": 4864,
    "num_hidden_layers": 24,
    "num_attention_heads": 14,
    "num_key_value_heads": 2,
    "vocab_size": 151936,
    "tie_word_embeddings": True,
    "max_position_embeddings": 32768,
    "rope_theta": 1000000.0,
    "rms_norm_eps": 1e-6,
    "hidden_act": "silu",
}
# name -> (load_in_4bit, use_lora, gradient_checkpointing)
VARIANTS = {
    "lora": (False, True, False),
    "lora+gc": (False, True, True),
    "qlora": (True, True, False),
    "qlora+gc": (True, True, True),
}
FULL_VARIANTS = {"full": (False, False, False), "full+gc": (False, False, True)}


def require_cuda() -> None:
    try:
        import torch
    except ImportError:
        sys.exit("gpu_memory.py: torch is not installed")
    if not torch.cuda.is_available():
        sys.exit(
            "gpu_memory.py measures GPU memory and needs a CUDA GPU, and none was found "
            "(torch.cuda.is_available() is False). Run it on a machine with an NVIDIA GPU."
        )


def build_model_dir(directory: Path) -> None:
    """A random-weight model with Qwen2.5-0.5B's architecture, saved as safetensors."""
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(Qwen2Config(**QWEN25_05B), dtype=torch.bfloat16)
    model.save_pretrained(directory, safe_serialization=True)


def byte_tokenizer():
    """The built-in model's byte-level tokenizer: prompts encode offline; ids past its 260 tokens decode
    to nothing, which only shortens the completion text the reward sees, not the tokens generated."""
    from transformers import AutoTokenizer

    from grpokit.model.builtin import resolve_model_path

    return AutoTokenizer.from_pretrained(resolve_model_path("builtin:tiny"))


def run_variant(model_dir: str, name: str, args: argparse.Namespace) -> dict:
    """One variant in this process: a few GRPO steps through grpokit's model loading and TRL's trainer."""
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from grpokit.config import GrpokitOptions
    from grpokit.model.loading import load_model, lora_config

    load_in_4bit, use_lora, gradient_checkpointing = {**VARIANTS, **FULL_VARIANTS}[name]
    options = GrpokitOptions(
        model_id=model_dir,
        train_dataset_path="-",
        dtype="bfloat16",
        use_lora=use_lora,
        load_in_4bit=load_in_4bit,
    )
    prompt = "1234567890" * (args.prompt_length // 10) + "+"  # about prompt_length bytes, one token each
    dataset = Dataset.from_list([{"prompt": prompt}] * 1024)

    def length_reward(completions, **kwargs):
        return [float(len(completion)) for completion in completions]

    class StepTimer(TrainerCallback):
        """Wall time of the steps after the first (warm-up)."""

        def __init__(self) -> None:
            self.started: float | None = None
            self.seconds = 0.0

        def on_step_begin(self, args, state, control, **kwargs):
            torch.cuda.synchronize()
            self.started = time.perf_counter() if state.global_step >= 1 else None

        def on_step_end(self, args, state, control, **kwargs):
            torch.cuda.synchronize()
            if self.started is not None:
                self.seconds += time.perf_counter() - self.started

    grpo_args = GRPOConfig(
        output_dir=tempfile.mkdtemp(prefix="grpokit-bench-"),
        max_steps=args.steps + 1,
        per_device_train_batch_size=args.batch_size,
        num_generations=args.num_generations,
        max_completion_length=args.completion_length,
        generation_kwargs={
            "min_new_tokens": args.completion_length
        },  # random weights: keep every completion full length
        gradient_checkpointing=gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False},
        bf16=True,
        learning_rate=1e-5,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
    )
    timer = StepTimer()
    torch.cuda.reset_peak_memory_stats()
    model = load_model(options, gradient_checkpointing=gradient_checkpointing)
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=length_reward,
        args=grpo_args,
        train_dataset=dataset,
        processing_class=byte_tokenizer(),
        peft_config=lora_config(options),
        callbacks=[timer],
    )
    trainer.train()
    completion_tokens = args.steps * args.batch_size * args.completion_length
    return {
        "variant": name,
        "load_in_4bit": load_in_4bit,
        "lora": use_lora,
        "gradient_checkpointing": gradient_checkpointing,
        "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 3),
        "completion_tok_s": round(completion_tokens / timer.seconds, 1) if timer.seconds else None,
        "gpu": torch.cuda.get_device_name(),
    }


def bitsandbytes_missing() -> bool:
    import importlib.util

    return importlib.util.find_spec("bitsandbytes") is None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=3, help="Measured GRPO steps (after one warm-up step).")
    parser.add_argument(
        "--batch-size", type=int, default=8, help="per_device_train_batch_size (completions per step)."
    )
    parser.add_argument("--num-generations", type=int, default=8)
    parser.add_argument("--prompt-length", type=int, default=64, help="Prompt tokens.")
    parser.add_argument(
        "--completion-length", type=int, default=256, help="Completion tokens (all completions this long)."
    )
    parser.add_argument("--full", action="store_true", help="Also measure full fine-tuning in bfloat16.")
    parser.add_argument("--json", type=Path, help="Also write the results to this JSON file.")
    parser.add_argument("--variant", help=argparse.SUPPRESS)  # internal: run one variant in this process
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    require_cuda()
    if args.variant:
        print("RESULT " + json.dumps(run_variant(args.model_dir, args.variant, args)), flush=True)
        return

    variants = [*VARIANTS, *(FULL_VARIANTS if args.full else [])]
    if bitsandbytes_missing():
        print("bitsandbytes is not installed: skipping the 4-bit variants (pip install bitsandbytes)")
        variants = [name for name in variants if not name.startswith("qlora")]
    results = []
    with tempfile.TemporaryDirectory(prefix="qwen25-05b-random-") as model_dir:
        build_model_dir(Path(model_dir))
        passthrough = [a for a in sys.argv[1:] if not a.startswith(("--json", "--full"))]
        if args.json is not None:
            passthrough = [a for a in passthrough if a != str(args.json)]
        for name in variants:
            command = [sys.executable, __file__, *passthrough, "--variant", name, "--model-dir", model_dir]
            finished = subprocess.run(command, check=False, capture_output=True, text=True)
            lines = [line for line in finished.stdout.splitlines() if line.startswith("RESULT ")]
            if finished.returncode != 0 or not lines:
                results.append(
                    {"variant": name, "error": finished.stderr.strip().splitlines()[-1:] or ["failed"]}
                )
            else:
                results.append(json.loads(lines[-1].removeprefix("RESULT ")))
            print(json.dumps(results[-1]), flush=True)
    print(f"\n{'variant':<10} {'4-bit':>6} {'grad ckpt':>10} {'peak GiB':>9} {'completion tok/s':>17}")
    for row in results:
        if "error" in row:
            print(f"{row['variant']:<10} error: {row['error'][0]}")
        else:
            print(
                f"{row['variant']:<10} {row['load_in_4bit']!s:>6} {row['gradient_checkpointing']!s:>10} "
                f"{row['peak_gib']:>9.2f} {row['completion_tok_s'] or float('nan'):>17.1f}"
            )
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
