"""What a config gets on a machine without CUDA: the GPU-only options turned off, each as one `Override`.

The same file then runs on a laptop: bf16 / fp16 train in float32, `tf32: true` (an Ampere GPU
matmul mode) is dropped, vLLM generation becomes transformers' `generate()` (and the `vllm_*` options
the file sets act on nothing), Liger's Triton kernels are off, FSDP / DeepSpeed written as TRL fields
become plain data parallel, Flash Attention 2 becomes SDPA, and a half precision dtype becomes float32
(the compute dtype of 4-bit layers too: bfloat16 matmuls are emulated, and slower, on CPUs without
AVX-512 BF16).

`load_in_4bit` and `load_in_8bit` stay on: bitsandbytes' CPU backend trains QLoRA on the CPU. They
are turned off only where bitsandbytes cannot do it here (not installed, a release without the CPU
backend, a CPU its kernels fail on), with the reason (`config.bitsandbytes_check`).

`cpu_fallbacks` only decides: it returns the changes as data, and `config.loading.resolve_config`
applies them and records them in `RunConfig.overrides` (see `config.overrides`).
"""

from __future__ import annotations

from typing import Any

from grpokit.config.bitsandbytes_check import bitsandbytes_cpu_problem, quantized_bits
from grpokit.config.overrides import INERT, Override
from grpokit.config.schema import GrpokitOptions

# TRL fields that only make sense with CUDA, and what grpokit uses instead on a CPU-only machine.
CUDA_ONLY_TRL_FLAGS = {"bf16": "float32 training", "fp16": "float32 training", "use_vllm": "transformers generate()"}
VLLM_PREFIX = "vllm_"  # TRL's options read by vLLM's generation only


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def cpu_trl_settings(trl_args: dict[str, Any]) -> dict[str, Any]:
    """TRL fields this machine sets where the config turns nothing on: TRL's `bf16` default (None) means
    "on a GPU", and pinned memory only helps host-to-GPU copies (a value the config sets is kept)."""
    settings: dict[str, Any] = {flag: False for flag in CUDA_ONLY_TRL_FLAGS}
    if "dataloader_pin_memory" not in trl_args:
        settings["dataloader_pin_memory"] = False
    return settings


def cpu_fallbacks(options: GrpokitOptions, trl_args: dict[str, Any], explicit_trl: dict[str, Any]) -> list[Override]:
    """The options a machine without CUDA cannot honour, each with what runs instead and why.

    `trl_args`: TRL's fields as resolved so far; `explicit_trl`: those the file itself sets. Nothing is
    changed here: the caller applies the overrides.
    """
    overrides = [
        Override(flag, trl_args[flag], False, f"needs a CUDA GPU and none was found; using {instead} instead", "trl")
        for flag, instead in CUDA_ONLY_TRL_FLAGS.items()
        if trl_args.get(flag)
    ]
    if trl_args.get("use_vllm"):
        overrides += [
            Override(key, value, INERT, "only vLLM's generation reads it, and vLLM is off on this machine")
            for key, value in explicit_trl.items()
            if key.startswith(VLLM_PREFIX)
        ]
    if explicit_trl.get("tf32"):  # transformers raises "--tf32 requires Ampere or a newer GPU" on a CPU
        overrides.append(Override("tf32", True, None, "needs an Ampere or newer CUDA GPU and none was found; full float32 matmuls", "trl"))
    if trl_args.get("use_liger_kernel"):
        overrides.append(
            Override("use_liger_kernel", True, False, "Liger's kernels are Triton GPU kernels and no CUDA GPU was found; "
                     "TRL's own loss and layers instead", "trl")
        )
    for key, off in (("fsdp", ""), ("deepspeed", None)):
        if trl_args.get(key):
            overrides.append(
                Override(key, trl_args[key], off, "shards the model across GPUs and none was found; plain data parallel "
                         "on the CPU instead", "trl")
            )
    return overrides + _model_fallbacks(options)


def _model_fallbacks(options: GrpokitOptions) -> list[Override]:
    overrides = []
    if options.attn_implementation == "flash_attention_2":
        overrides.append(Override("attn_implementation", "flash_attention_2", "sdpa", "needs a CUDA GPU", "option"))
    bits = quantized_bits(options)
    problem = bitsandbytes_cpu_problem(bits) if bits else None
    if problem:
        overrides.append(
            Override(f"load_in_{bits}bit", True, False, f"bitsandbytes cannot quantize on this machine without CUDA: "
                     f"{problem}; loading the model unquantized instead", "option")
        )
    if options.dtype in ("bfloat16", "float16"):
        overrides.append(Override("dtype", options.dtype, "float32", "training in half precision on a CPU is slow or unsupported", "option"))
    return overrides
