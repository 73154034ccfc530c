"""Whether bitsandbytes can quantize on this machine: a real 4-/8-bit layer, checked once per process.

bitsandbytes (0.50, pinned in constraints.txt) has a CPU backend: `Linear4bit` (NF4, double quantization) and
`Linear8bitLt` run forward and backward on CPU tensors, so a config with `load_in_4bit: true` trains the
same QLoRA model on a laptop as on a GPU. Where it cannot (not installed, a release without the CPU
backend, a CPU its kernels do not run on), `bitsandbytes_cpu_problem` says which, and the CPU fallbacks
(`config.fallbacks`) load the model unquantized with one warning. It lives with the config because the
config decides, at load, what the run will do; `model.quantization` loads and measures the quantized model.

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
from typing import Literal

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
