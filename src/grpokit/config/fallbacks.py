"""What a config gets on a machine without CUDA: the GPU-only options turned off, one warning line each.

The same file then runs on a laptop: bf16 / fp16 train in float32, `tf32: true` (an Ampere GPU
matmul mode) is dropped, vLLM generation becomes transformers' `generate()`, Flash Attention 2
becomes SDPA, and a half precision dtype becomes float32 (the compute dtype of 4-bit layers too:
bfloat16 matmuls are emulated, and slower, on CPUs without AVX-512 BF16).

`load_in_4bit` and `load_in_8bit` stay on: bitsandbytes' CPU backend trains QLoRA on the CPU. They
are turned off only where bitsandbytes cannot do it here (not installed, a release without the CPU
backend, a CPU its kernels fail on), with one warning saying which (`model.quantization`).
"""

from __future__ import annotations

import logging
from typing import Any

from grpokit.config.bitsandbytes_check import bitsandbytes_cpu_problem, quantized_bits
from grpokit.config.distributed import log_on_main_process
from grpokit.config.schema import GrpokitOptions

logger = logging.getLogger("grpokit.config")

# TRL fields that only make sense with CUDA, and what grpokit uses instead on a CPU-only machine.
CUDA_ONLY_TRL_FLAGS = {"bf16": "float32 training", "fp16": "float32 training", "use_vllm": "transformers generate()"}


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def apply_cpu_fallbacks(
    options: GrpokitOptions, trl_args: dict[str, Any], explicit_trl: dict[str, Any], *, has_cuda: bool
) -> list[str]:
    """Turn off options that need CUDA on a CPU-only machine; one warning line per option turned off."""
    if has_cuda:
        return []
    warnings: list[str] = []
    for flag, instead in CUDA_ONLY_TRL_FLAGS.items():
        if explicit_trl.get(flag):
            warnings.append(f"{flag}: true needs a CUDA GPU and none was found; using {instead} instead")
        trl_args[flag] = False
    trl_args.setdefault("dataloader_pin_memory", False)  # pinned memory only helps host-to-GPU copies
    if explicit_trl.get("tf32"):  # transformers raises "--tf32 requires Ampere or a newer GPU" on a CPU
        warnings.append("tf32: true needs an Ampere or newer CUDA GPU and none was found; using full float32 matmuls")
        trl_args["tf32"] = None
    if options.attn_implementation == "flash_attention_2":
        warnings.append("attn_implementation: flash_attention_2 needs a CUDA GPU; using 'sdpa' instead")
        options.attn_implementation = "sdpa"
    bits = quantized_bits(options)
    problem = bitsandbytes_cpu_problem(bits) if bits else None
    if problem:
        key = f"load_in_{bits}bit"
        warnings.append(
            f"{key}: true, but bitsandbytes cannot quantize on this machine without CUDA: {problem}; "
            "loading the model unquantized instead"
        )
        setattr(options, key, False)
    if options.dtype in ("bfloat16", "float16"):
        warnings.append(f"dtype: {options.dtype} on a CPU is slow or unsupported for training; using float32 instead")
        options.dtype = "float32"
    log_on_main_process(logger, warnings)
    return warnings
