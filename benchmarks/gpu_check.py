"""The GPU check: the converted AWS sample with QLoRA and Flash Attention 2, with and without vLLM colocate, against plain TRL.

    python benchmarks/gpu_check.py                    # one CUDA GPU, about 5-8 minutes
    python benchmarks/gpu_check.py --steps 6 --json gpu_check.json
    python benchmarks/gpu_check.py --install          # first pip install grpokit's gpu and vllm extras

Needs one CUDA GPU and grpokit installed with its `gpu` extra (bitsandbytes, flash-attn) and its
`vllm` extra (TRL's own vLLM range); `--install` pip-installs them first from the package registry
(flash-attn builds from source: given 7 minutes, else its variants are skipped). On a machine
without CUDA it says so and exits 0 having checked nothing.

What it runs, each variant in a fresh process (so peaks never mix):

- the config `grpokit convert aws-sample examples/aws_sample/args.yaml` writes (TRL 0.17.0 defaults,
  4-bit NF4 with double quantization, bf16, Flash Attention 2, LoRA on all linear layers, beta 0.04,
  the sample's three rewards, `merge_weights: true`) on the sample's data shipped in
  examples/aws_sample/data, with only these changed: the model, the step count, a log line and a
  checkpoint each step, no MLflow, and completions held at `--completion-tokens` (`min_new_tokens`);
- `grpokit`: that config as it is; `grpokit+vllm`: the same with `use_vllm: true`, `vllm_mode:
  colocate` (`vllm_gpu_memory_utilization` 0.3);
- `trl` and `trl+vllm`: a plain TRL script at the same TRL settings (the TRL fields grpokit resolves
  from the config), loading the model as the AWS sample's train.py did (BitsAndBytesConfig NF4,
  `prepare_model_for_kbit_training`, LoRA all-linear, Flash Attention 2), with equivalent rewards.

The model: no Hub download is possible where the GPU is lent, so it is built here from a config:
Qwen2.5-0.5B's architecture (24 layers, hidden 896, GQA 14/2 heads, head dim 64) with random bf16
weights and the built-in model's byte-level tokenizer (vocabulary 260, so every id the model can
sample decodes; vLLM and TRL both load it from the local folder). It measures speed and memory,
not quality.

Printed per variant: seconds per step (median after a warm-up step), completion tokens per second,
peak GPU memory (torch's `max_memory_allocated`, and the device's used memory, which includes vLLM's
pre-allocated KV cache), and for grpokit's variants the merged-model check: the saved merged model
loads in plain transformers, its logits are finite, and its greedy tokens on held-out prompts are
compared with the adapter's (last checkpoint) on the quantized base. Exit 0: every variant ran and
every check passed; 1: a variant or a check failed; 2: incomplete (variants skipped for a missing package,
or SDPA run where flash-attn is missing).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "examples" / "aws_sample"
QWEN25_05B_SHAPE = {
    "hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24, "num_attention_heads": 14,
    "num_key_value_heads": 2, "max_position_embeddings": 32768, "rope_theta": 1000000.0, "rms_norm_eps": 1e-6,
    "hidden_act": "silu", "tie_word_embeddings": True,
}  # fmt: skip
VARIANTS = ("grpokit", "grpokit+vllm", "trl", "trl+vllm")
VLLM_SETTINGS = {"use_vllm": True, "vllm_mode": "colocate", "vllm_gpu_memory_utilization": 0.3, "vllm_max_model_length": 1024}
# bf16 on the GPU: merged weights are rounded once, the adapter path per layer. A first bound, to be replaced by
# what the first GPU run measures (float32 on the CPU: 6.7e-6, tests/test_qlora.py). Random weights make nearly
# uniform logits, so greedy tokens may flip on ties: their agreement is printed, the logits decide.
MERGE_LOGIT_TOLERANCE_BF16 = 0.25
PIP = [sys.executable, "-m", "pip", "install"]
FLASH_ATTN_BUILD_S = 420  # flash-attn ships no wheel on PyPI: pip builds it (CUDA toolkit needed); past this, go on without


def cuda_problem() -> str | None:
    """Why this machine cannot run the check, or None."""
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if not torch.cuda.is_available():
        return f"no CUDA GPU found (torch {torch.__version__}: torch.cuda.is_available() is False)"
    return None


def missing_packages() -> dict[str, str]:
    """Variant -> the package it needs and this machine lacks."""
    import importlib.util

    missing = {}
    for package, variants in (("bitsandbytes", VARIANTS), ("vllm", ("grpokit+vllm", "trl+vllm"))):
        if importlib.util.find_spec(package) is None:
            for variant in variants:
                missing.setdefault(variant, package)
    return missing


# ----------------------------------------------------------------------------- what every variant runs


def build_model(directory: Path) -> Path:
    """A random-weight Qwen2.5-0.5B-shaped model with the built-in byte-level tokenizer, saved to `directory`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen2Config

    from grpokit.model.builtin import resolve_model_path

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("builtin:tiny"))
    config = Qwen2Config(
        **QWEN25_05B_SHAPE, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id
    )
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16).save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)
    return directory


def attention() -> str:
    """Flash Attention 2 as the sample asks, or SDPA where the flash-attn package is missing (said in the table)."""
    import importlib.util

    return "flash_attention_2" if importlib.util.find_spec("flash_attn") is not None else "sdpa"


def converted_config(work: Path, model_dir: Path, *, steps: int, completion_tokens: int, vllm: bool) -> dict:
    """The converted AWS sample, changed only where this check must (see the module docstring)."""
    import yaml

    from grpokit.commands.convert import SampleData, run_convert

    data = SampleData(train=str(SAMPLE / "data" / "train"), test=str(SAMPLE / "data" / "test"))
    written = run_convert("aws-sample", SAMPLE / "args.yaml", work / "converted.yaml", data=data, force=True).path
    config = yaml.safe_load(written.read_text())
    config.update(
        model_id=str(model_dir), max_steps=steps + 1, logging_steps=1, save_steps=1, save_total_limit=1,
        output_dir=str(work / ("out-vllm" if vllm else "out")), mlflow_uri=None, mlflow_experiment_name=None,
        max_completion_length=completion_tokens,
        generation_kwargs={"min_tokens" if vllm else "min_new_tokens": completion_tokens},  # vLLM's SamplingParams name
        **(VLLM_SETTINGS if vllm else {}),
    )  # fmt: skip
    return config


# ----------------------------------------------------------------------------- the children


def _step_clock():
    import torch
    from transformers import TrainerCallback

    class StepClock(TrainerCallback):
        def __init__(self) -> None:
            self.seconds: list[float] = []

        def on_step_begin(self, args, state, control, **kwargs):
            torch.cuda.synchronize()
            self.started = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            torch.cuda.synchronize()
            self.seconds.append(time.perf_counter() - self.started)

    return StepClock()


def _memory() -> dict[str, float]:
    import torch

    free, total = torch.cuda.mem_get_info()
    return {"peak_allocated_gib": torch.cuda.max_memory_allocated() / 2**30, "device_used_gib": (total - free) / 2**30}


def child_grpokit(spec_file: str, result_file: str) -> None:
    from grpokit.config import load_config
    from grpokit.trainer import train

    spec = json.loads(Path(spec_file).read_text())
    clock = _step_clock()
    train(load_config(data=spec["config"]), extra_callbacks=[clock])
    memory = _memory()  # before the merged-model check loads more
    merged = check_merged_model(spec["config"], spec["model_dir"])
    Path(result_file).write_text(json.dumps({"steps": clock.seconds, **memory, "merged": merged}))


def check_merged_model(config: dict, model_dir: str) -> dict:
    """The merged model loads in plain transformers and generates what the adapter did on the quantized base."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    out = Path(config["output_dir"])
    checkpoint = max((out / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    tokenizer = AutoTokenizer.from_pretrained(out)
    prompts = [f"{a} * {b} = " for a, b in zip(range(11, 19), range(21, 29))]
    batch = tokenizer(prompts, return_tensors="pt", padding=True, padding_side="left").to("cuda")
    merged = AutoModelForCausalLM.from_pretrained(out, dtype=torch.bfloat16, device_map={"": 0}).eval()
    quantization = BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=torch.bfloat16
    )
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16, quantization_config=quantization, device_map={"": 0})
    adapter = PeftModel.from_pretrained(base, str(checkpoint)).eval()
    greedy = {"max_new_tokens": 16, "do_sample": False, "pad_token_id": tokenizer.pad_token_id}
    with torch.no_grad():
        merged_logits, adapter_logits = merged(**batch).logits.float(), adapter(**batch).logits.float()
        same = (merged.generate(**batch, **greedy) == adapter.generate(**batch, **greedy)).float().mean().item()
    finite = bool(torch.isfinite(merged_logits).all())
    difference = (merged_logits - adapter_logits).abs().max().item()
    return {
        "loads": True, "finite": finite, "max_logit_difference": difference, "greedy_token_agreement": same,
        "ok": finite and difference <= MERGE_LOGIT_TOLERANCE_BF16,
    }  # fmt: skip


def child_plain_trl(spec_file: str, result_file: str) -> None:
    """The plain TRL script (no grpokit import): the AWS sample's model setup at the same TRL settings."""
    import re

    import torch
    from datasets import load_dataset
    from peft import LoraConfig, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig
    from trl import GRPOConfig, GRPOTrainer

    spec = json.loads(Path(spec_file).read_text())

    def length(completions, **kwargs):  # the sample's reward_len
        return [min(len(c[-1]["content"]) + 1, 512) / 512 for c in completions]

    def tags(completions, **kwargs):
        pattern = re.compile(r"\s*<think>.*?</think>\s*<answer>.*?</answer>\s*", re.DOTALL)
        return [1.0 if pattern.fullmatch(c[-1]["content"]) else 0.0 for c in completions]

    quantization = BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=torch.bfloat16
    )
    model = AutoModelForCausalLM.from_pretrained(
        spec["model_dir"], dtype=torch.bfloat16, quantization_config=quantization, device_map={"": 0},
        attn_implementation=spec["config"]["attn_implementation"],
    )  # fmt: skip
    args = GRPOConfig(**spec["trl_args"], output_dir=spec["output_dir"], report_to="none", save_strategy="no")
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=args.gradient_checkpointing)
    lora = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.1, target_modules="all-linear", bias="none", task_type="CAUSAL_LM")
    dataset = load_dataset("json", data_files=str(SAMPLE / "data" / "train" / "dataset.json"), split="train")
    clock = _step_clock()
    trainer = GRPOTrainer(
        model=model, reward_funcs=[length, tags], args=args, train_dataset=dataset,
        processing_class=AutoTokenizer.from_pretrained(spec["model_dir"]), peft_config=lora, callbacks=[clock],
    )  # fmt: skip
    trainer.train()
    Path(result_file).write_text(json.dumps({"steps": clock.seconds, **_memory()}))


# ----------------------------------------------------------------------------- the parent


def run_variant(variant: str, work: Path, model_dir: Path, args: argparse.Namespace, limit: float) -> dict:
    from grpokit.config import load_config

    vllm = variant.endswith("+vllm")
    config = converted_config(work / variant.replace("+", "-"), model_dir, steps=args.steps,
                              completion_tokens=args.completion_tokens, vllm=vllm)  # fmt: skip
    config["attn_implementation"] = attention()
    trl_args = {k: v for k, v in load_config(data=config).trl_args.items() if k not in ("save_strategy", "save_steps")}
    spec = {"config": config, "model_dir": str(model_dir), "trl_args": trl_args, "output_dir": config["output_dir"]}
    spec_file, result_file = work / f"{variant}.spec.json", work / f"{variant}.result.json"
    spec_file.write_text(json.dumps(spec))
    flag = "--child-trl" if variant.startswith("trl") else "--child-grpokit"
    started = time.perf_counter()
    try:
        finished = subprocess.run([sys.executable, __file__, flag, str(spec_file), str(result_file)],
                                  capture_output=True, text=True, check=False, timeout=limit)  # fmt: skip
    except subprocess.TimeoutExpired:
        return {"variant": variant, "status": "failed", "error": f"still running after {limit:.0f} s: stopped"}
    if finished.returncode != 0 or not result_file.exists():
        lines = [line for line in finished.stderr.strip().splitlines() if line.strip()]
        return {"variant": variant, "status": "failed", "error": lines[-1] if lines else f"exit {finished.returncode}"}
    result = json.loads(result_file.read_text())
    step = statistics.median(result["steps"][1:] or result["steps"])
    completions_per_step = config["per_device_train_batch_size"] * config["gradient_accumulation_steps"]
    merged = result.get("merged")
    status = "ok" if merged is None or merged["ok"] else "merged check failed"
    if config["attn_implementation"] != "flash_attention_2" and status == "ok":
        status = "ok (sdpa: no flash-attn)"
    return {
        "variant": variant, "status": status,
        "step_s": round(step, 3), "completion_tok_s": round(completions_per_step * args.completion_tokens / step, 1),
        "peak_allocated_gib": round(result["peak_allocated_gib"], 2), "device_used_gib": round(result["device_used_gib"], 2),
        "wall_s": round(time.perf_counter() - started, 1), "merged": merged,
    }  # fmt: skip


def table(rows: list[dict]) -> str:
    lines = [f"{'variant':<14} {'status':<22} {'s/step':>7} {'compl tok/s':>12} {'peak alloc GiB':>15} {'device GiB':>11}"]
    for row in rows:
        if row["status"] in ("failed",) or row["status"].startswith("skipped"):
            lines.append(f"{row['variant']:<14} {row['status']:<22} {row.get('error', '')}")
            continue
        lines.append(
            f"{row['variant']:<14} {row['status']:<22} {row['step_s']:>7.2f} {row['completion_tok_s']:>12.1f} "
            f"{row['peak_allocated_gib']:>15.2f} {row['device_used_gib']:>11.2f}"
        )
        if row.get("merged"):
            merged = row["merged"]
            lines.append(
                f"{'':<14} merged model: loads, finite logits {merged['finite']}, greedy tokens equal to the adapter's "
                f"{merged['greedy_token_agreement']:.0%}, max |logit difference| {merged['max_logit_difference']:.3g}"
            )
    return "\n".join(lines)


def install_extras() -> None:
    """grpokit's gpu and vllm extras, one step at a time so a failed flash-attn build does not stop the rest:
    bitsandbytes, then TRL's own vllm extra at the installed TRL (vLLM pins its torch: pip may replace torch),
    then flash-attn (built from source, with a time limit)."""
    import importlib.metadata

    steps = [
        ([*PIP, "bitsandbytes>=0.50", f"trl[vllm]=={importlib.metadata.version('trl')}"], 600),
        ([*PIP, "--no-build-isolation", "flash-attn>=2.6"], FLASH_ATTN_BUILD_S),
    ]
    for command, limit in steps:
        print("gpu_check: " + " ".join(command), flush=True)
        try:
            subprocess.run(command, check=False, timeout=limit)
        except subprocess.TimeoutExpired:
            print(f"gpu_check: gave up after {limit} s; the variants that need it are skipped", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=4, help="Measured steps per variant (after one warm-up step).")
    parser.add_argument("--completion-tokens", type=int, default=256, help="Every completion's length (TRL 0.17.0's max).")
    parser.add_argument("--timeout", type=int, default=240, help="Seconds one variant may take.")
    parser.add_argument("--budget", type=int, default=570, help="Seconds the whole check may take (installing aside).")
    parser.add_argument("--install", action="store_true", help="First pip install grpokit's gpu and vllm extras.")
    parser.add_argument("--json", type=Path, help="Also write the results here.")
    parser.add_argument("--child-grpokit", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--child-trl", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_grpokit:
        return child_grpokit(*args.child_grpokit) or 0
    if args.child_trl:
        return child_plain_trl(*args.child_trl) or 0
    problem = cuda_problem()
    if problem:
        print(f"gpu_check: {problem}. This check needs one NVIDIA GPU with CUDA; nothing was run or changed here.")
        return 0
    if args.install:
        install_extras()
    import torch

    print(f"gpu_check: {torch.cuda.get_device_name()}, torch {torch.__version__}, CUDA {torch.version.cuda}", flush=True)
    missing = missing_packages()
    deadline = time.monotonic() + args.budget
    rows = []
    with tempfile.TemporaryDirectory(prefix="grpokit-gpu-check-") as directory:
        work = Path(directory)
        model_dir = build_model(work / "model")
        for variant in VARIANTS:
            if variant in missing:
                rows.append({"variant": variant, "status": f"skipped: no {missing[variant]}",
                             "error": f"pip install -e '{ROOT}[gpu,vllm]', or run with --install"})  # fmt: skip
            elif (left := deadline - time.monotonic()) < 60:
                rows.append({"variant": variant, "status": "skipped: out of time", "error": f"--budget {args.budget} s spent"})
            else:
                rows.append(run_variant(variant, work, model_dir, args, min(args.timeout, left)))
            print(json.dumps(rows[-1]), flush=True)
    print("\n" + table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    if any(not row["status"].startswith(("ok", "skipped")) for row in rows):
        return 1
    return 0 if all(row["status"] == "ok" for row in rows) else 2  # 2: skipped variants, or SDPA instead of FA2


if __name__ == "__main__":
    sys.exit(main())
