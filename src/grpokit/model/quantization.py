"""QLoRA on any machine: whether bitsandbytes can quantize here, where the quantized model goes, what it weighs.

bitsandbytes (0.50, pinned in constraints.txt) has a CPU backend: `Linear4bit` (NF4, double quantization) and
`Linear8bitLt` run forward and backward on CPU tensors, so a config with `load_in_4bit: true` trains the
same QLoRA model on a laptop as on a GPU. Where it cannot (not installed, a release without the CPU
backend, a CPU its kernels do not run on), `bitsandbytes_cpu_problem` says which, and the CPU fallbacks
(`config.fallbacks`) load the model unquantized with one warning.

The check is a real one: a tiny layer quantized, multiplied forward and backward, and compared with the
product computed from its dequantized weight. Asking bitsandbytes which backends it registered would
miss a kernel that loads but computes garbage, or one missing for 8-bit only.

Example:
    >>> bitsandbytes_cpu_problem(4)         # None: 4-bit layers work on this CPU
    >>> bitsandbytes_cpu_problem(8)         # where it is missing
    "bitsandbytes is not installed (pip install 'bitsandbytes>=0.50' for QLoRA on the CPU)"
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass
from typing import Any, Literal

logger = logging.getLogger("grpokit.model")

QuantizedBits = Literal[4, 8]
PROBE_FEATURES, PROBE_OUTPUTS, PROBE_ROWS = 128, 64, 3  # a layer of 128 -> 64, two blocks of 64 per row
INSTALL_HINT = "pip install 'bitsandbytes>=0.50' for QLoRA on the CPU"
PROBE_TOLERANCE = 1e-3  # relative to the largest output: the layer against its own dequantized weight


def quantized_bits(options) -> QuantizedBits | None:
    """4 or 8 when the config loads the base model quantized (`load_in_4bit` / `load_in_8bit`), else None."""
    return 4 if options.load_in_4bit else 8 if options.load_in_8bit else None


class _OncePerMessage(logging.Filter):
    """Lets each distinct message through once: bitsandbytes logs some at every layer call."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg in self.seen:
            return False
        self.seen.add(record.msg)
        return True


class _NoHubKernelAdvice(logging.Filter):
    """Drops bitsandbytes' advice to `pip install kernels` on AVX-512 BF16 CPUs: that package downloads its
    kernel from the Hugging Face Hub at run time, which grpokit never does; bitsandbytes' own CPU kernel runs."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "kernels-community" not in str(record.msg)


@functools.cache
def quiet_bitsandbytes() -> None:
    """Install the filters above on bitsandbytes' loggers (once per process, before it is imported).

    "MatMul8bitLt: inputs will be cast from torch.float32 to float16" comes at every call of every
    8-bit layer in eval mode; one line says it.
    """
    logging.getLogger("bitsandbytes.autograd._functions").addFilter(_OncePerMessage())
    logging.getLogger("bitsandbytes.backends.cpu.ops").addFilter(_NoHubKernelAdvice())


@functools.cache
def bitsandbytes_cpu_problem(bits: QuantizedBits) -> str | None:
    """None when bitsandbytes trains `bits`-bit layers on this CPU; else why not, as one phrase.

    Runs once per process (a few milliseconds once bitsandbytes is imported). Never raises: every
    failure becomes the reason returned, so the caller can fall back with a warning.
    """
    quiet_bitsandbytes()
    try:
        import bitsandbytes
    except ImportError:
        return f"bitsandbytes is not installed ({INSTALL_HINT})"
    except Exception as error:  # noqa: BLE001 - a broken install (RuntimeError from its backend loader) is a reason too
        return f"bitsandbytes failed to import ({type(error).__name__}: {_first_line(error)}; {INSTALL_HINT})"
    version = getattr(bitsandbytes, "__version__", "?")
    if "cpu" not in getattr(bitsandbytes, "supported_torch_devices", ()):
        return f"bitsandbytes {version} has no CPU backend ({INSTALL_HINT})"
    try:
        _probe_4bit() if bits == 4 else _probe_8bit()
    except NotImplementedError as error:  # torch: "Could not run 'bitsandbytes::...' with arguments from the 'CPU' backend"
        return f"bitsandbytes {version} has no CPU kernel for {bits}-bit layers ({_first_line(error)}; {INSTALL_HINT})"
    except Exception as error:  # noqa: BLE001 - whatever the kernel raises is the reason the fallback names
        return (
            f"a {bits}-bit bitsandbytes {version} layer failed on this CPU ({type(error).__name__}: {_first_line(error)}); "
            f"set load_in_{bits}bit: false to train unquantized without this warning"
        )
    return None


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _probe_inputs():
    import torch

    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(PROBE_OUTPUTS, PROBE_FEATURES, generator=generator)
    inputs = torch.randn(PROBE_ROWS, PROBE_FEATURES, generator=generator, requires_grad=True)
    return weight, inputs


def _check_against(layer_output, inputs, dequantized_weight, what: str) -> None:
    """The layer's output and input gradient must be those of a plain matmul with its dequantized weight."""
    import torch

    expected = inputs.detach() @ dequantized_weight.t()  # [rows, outputs]
    scale = float(expected.abs().max()) or 1.0
    error = float((layer_output.detach() - expected).abs().max()) / scale
    if not torch.isfinite(layer_output).all() or error > PROBE_TOLERANCE:
        raise RuntimeError(f"{what} output differs from its dequantized weight's by {error:.2g} (relative)")
    layer_output.sum().backward()
    expected_grad = dequantized_weight.sum(dim=0).expand_as(inputs)  # d(sum(x W^T))/dx
    grad_error = float((inputs.grad - expected_grad).abs().max()) / (float(expected_grad.abs().max()) or 1.0)
    if grad_error > PROBE_TOLERANCE:
        raise RuntimeError(f"{what} input gradient differs from its dequantized weight's by {grad_error:.2g}")


def _probe_4bit() -> None:
    import bitsandbytes as bnb
    import torch

    weight, inputs = _probe_inputs()
    layer = bnb.nn.Linear4bit(
        PROBE_FEATURES, PROBE_OUTPUTS, bias=False, compute_dtype=torch.float32, compress_statistics=True, quant_type="nf4"
    )
    layer.weight = bnb.nn.Params4bit(weight, requires_grad=False, compress_statistics=True, quant_type="nf4")
    layer = layer.to("cpu")  # quantizes
    dequantized = bnb.functional.dequantize_4bit(layer.weight.data, layer.weight.quant_state).float()
    _check_against(layer(inputs), inputs, dequantized, "NF4 layer")


def _probe_8bit() -> None:
    import bitsandbytes as bnb

    weight, inputs = _probe_inputs()
    layer = bnb.nn.Linear8bitLt(PROBE_FEATURES, PROBE_OUTPUTS, bias=False, has_fp16_weights=False, threshold=6.0)
    layer.weight = bnb.nn.Int8Params(weight, requires_grad=False, has_fp16_weights=False)
    layer = layer.to("cpu")  # quantizes
    layer.train()  # training: bitsandbytes' CPU path dequantizes and multiplies in the input's dtype
    output = layer(inputs)
    dequantized = layer.state.CB.float() * layer.state.SCB.float().unsqueeze(1) / 127.0
    _check_against(output, inputs, dequantized, "int8 layer")


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
