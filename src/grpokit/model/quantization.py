"""The quantized model: where it goes, what it weighs, its adapters on a CPU, and dequantizing it for a merge.

Whether bitsandbytes can quantize on this machine at all is decided at load by
`config.bitsandbytes_check` (a real 4-/8-bit layer, checked once per process).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

from grpokit.config.bitsandbytes_check import QuantizedBits, quantized_bits, quiet_bitsandbytes

logger = logging.getLogger("grpokit.model")

__all__ = ["QuantizedBits", "quantized_bits", "quiet_bitsandbytes"]  # re-exported for the model stage


def quantized_device_map(*, has_cuda: bool) -> dict[str, Any]:
    """Where transformers places a bitsandbytes model: this process's GPU, or the CPU.

    `{"": LOCAL_RANK}` on a machine without CUDA fails inside transformers with "Cannot access
    accelerator device when none is available".
    """
    return {"": int(os.environ.get("LOCAL_RANK", "0"))} if has_cuda else {"": "cpu"}


@dataclass(frozen=True)
class WeightMemory:
    """The bytes a model's weights take in memory, as loaded and as they would unquantized."""

    loaded_bytes: int
    unquantized_bytes: int
    bits: QuantizedBits | None
    dtype: str  # the load dtype: of the layers left whole, and of the whole model unquantized

    def line(self) -> str:
        """One line for `grpokit validate`."""
        if self.bits is None:
            return f"the weights take {_size(self.loaded_bytes)} in {self.dtype}"
        how = "4-bit NF4 with double quantization" if self.bits == 4 else "8-bit (LLM.int8)"
        return (
            f"the weights take {_size(self.loaded_bytes)} in {how}, against {_size(self.unquantized_bytes)} "
            f"unquantized in {self.dtype} ({self.unquantized_bytes / self.loaded_bytes:.1f}x less)"
        )


def _size(count: int) -> str:
    return f"{count / 2**30:.2f} GiB" if count >= 2**30 else f"{count / 2**20:.2f} MiB"


NF4_BLOCK, NESTED_BLOCK = 64, 256  # bitsandbytes' 4-bit block size; double quantization's block of absmax values


def weight_memory(skeleton, bits: QuantizedBits | None, dtype) -> WeightMemory:
    """The memory of `skeleton`'s weights (a model on the meta device) loaded in `bits` bits, without loading it.

    Counts what bitsandbytes stores, as transformers quantizes: every `nn.Linear` except the modules
    transformers keeps whole (the output head and tied embeddings, `get_keys_to_not_convert`) becomes
    4-bit NF4 (half a byte a weight, one 8-bit scale per 64 weights, one float32 per 256 scales) or
    int8 (a byte a weight, one float32 scale per row); the rest stays in `dtype` (a torch dtype).
    tests/test_qlora.py checks it against the tensors of the loaded model, quantization state included.
    """
    import torch

    keep_whole = _modules_kept_whole(skeleton) if bits else []
    loaded = unquantized = 0
    counted: set[int] = set()
    for name, module in skeleton.named_modules():
        for parameter in module.parameters(recurse=False):
            if id(parameter) in counted:  # tied weights are stored once
                continue
            counted.add(id(parameter))
            plain = parameter.numel() * dtype.itemsize
            unquantized += plain
            quantize = bits and isinstance(module, torch.nn.Linear) and parameter is module.weight
            loaded += _quantized_bytes(module.weight, bits) if quantize and not _kept(name, keep_whole) else plain
    return WeightMemory(loaded_bytes=loaded, unquantized_bytes=unquantized, bits=bits, dtype=str(dtype).removeprefix("torch."))


def _quantized_bytes(weight, bits: QuantizedBits) -> int:
    count = weight.numel()
    if bits == 8:
        return count + 4 * weight.shape[0]  # int8 weights, a float32 scale per output row
    blocks = -(-count // NF4_BLOCK)
    return -(-count // 2) + blocks + 4 * -(-blocks // NESTED_BLOCK) + 4  # packed nibbles, 8-bit absmax, nested absmax, offset


def _modules_kept_whole(skeleton) -> list[str]:
    from transformers.quantizers.base import get_keys_to_not_convert

    return get_keys_to_not_convert(skeleton)


def _kept(name: str, keep_whole: list[str]) -> bool:
    from transformers.quantizers.quantizers_utils import should_convert_module

    return not should_convert_module(name, keep_whole)


def float32_adapters_on_cpu(model) -> int:
    """Cast the trainable (LoRA) weights of a quantized model on the CPU back to float32; returns how many.

    TRL casts them to bfloat16 on every quantized model, following the QLoRA paper, which is right on
    a GPU. On a CPU without native bfloat16 matmuls (AVX-512 BF16 or AMX) the adapter's matmuls are
    then emulated, and its input is cast to bfloat16 and back at every layer; with the float32
    compute dtype the CPU fallbacks choose, float32 adapters are both faster and more precise.
    Measured on builtin:tiny (2-core AVX2 machine): linear layers took 1.8x the CPU time of the
    unquantized run with bfloat16 adapters (see benchmarks/qlora_cpu.py).
    """
    import torch

    if not (getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False)):
        return 0
    cast = 0
    for parameter in model.parameters():
        if parameter.requires_grad and parameter.device.type == "cpu" and parameter.dtype == torch.bfloat16:
            parameter.data = parameter.data.to(torch.float32)
            cast += 1
    return cast



def dequantized(model, dtype):
    """`model` (loaded in 4 or 8 bits) with every quantized layer replaced by a plain `nn.Linear` holding its
    dequantized weight, everything in `dtype`, the quantization config removed: what an adapter trained on
    the quantized model is merged into.
    """
    return model.dequantize(dtype=dtype).to(dtype)


def keep_4bit_layers_trainable(model) -> None:
    """Keep bitsandbytes from switching a 4-bit layer on the CPU to its inference-only kernel.

    On a CPU with AVX-512 BF16, the first call of a `Linear4bit` in eval mode without gradients (an
    evaluation during training, say) repacks its weight for a fused kernel that has no backward, and
    every later call, training included, goes through it: the gradient through the frozen base weight
    would then be lost without an error. With the switch off, every call takes the path the CPU tests
    train through (dequantize, then matmul).
    """
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False
