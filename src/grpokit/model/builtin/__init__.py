"""Models that ship inside the package, named `builtin:<name>` in a config's `model_id`.

Each lives in a folder next to this file (safetensors weights, config, tokenizer, README), so demos
and tests run offline. `grpokit.tasks.build_tiny` rebuilds `builtin:tiny` (addition, plain prompts);
`grpokit.tasks.build_chat` rebuilds `builtin:tiny-chat` (chat prompts: the `tool_task` and `format_task`).

Example:
    >>> resolve_model_path("builtin:tiny")        # '/.../grpokit/model/builtin/tiny'
    >>> resolve_model_path("Qwen/Qwen2.5-0.5B")   # returned unchanged
    'Qwen/Qwen2.5-0.5B'
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path

from grpokit.errors import ConfigError

BUILTIN_PREFIX = "builtin:"
_HERE = Path(__file__).resolve().parent

# name -> (description, the module that rebuilds it). Explicit on purpose: a stray folder here is not a model.
_BUILTINS = {
    "tiny": (
        (
            "0.9 M parameter Qwen2 with a byte-level tokenizer and ChatML template, warm-started on "
            "2-digit addition (held-out accuracy about 0.5); for offline demos and tests"
        ),
        "build_tiny",
    ),
    "tiny-chat": (
        (
            "1.0 M parameter Qwen2 chat model with a byte-level BPE tokenizer and TRL's Qwen2.5 template, "
            "warm-started to sometimes call a calculator tool and sometimes follow the AWS sample's "
            "<think>/<answer> format; for the tools and aws-sample demos"
        ),
        "build_chat",
    ),
}


@dataclass(frozen=True)
class BuiltinModel:
    name: str  # as written in a config: "builtin:tiny"
    path: Path
    description: str
    build_module: str  # grpokit.tasks.<build_module> rebuilds it
    num_parameters: int | None  # None when the weights file is missing (the model was never built)


def list_builtin_models() -> list[BuiltinModel]:
    """Every built-in model, with its parameter count read from the safetensors header (no weights loaded)."""
    models = []
    for short_name, (description, build_module) in _BUILTINS.items():
        path = _HERE / short_name
        weights = path / "model.safetensors"
        models.append(
            BuiltinModel(
                name=BUILTIN_PREFIX + short_name,
                path=path,
                description=description,
                build_module=build_module,
                num_parameters=_count_safetensors_parameters(weights) if weights.is_file() else None,
            )
        )
    return models


def resolve_model_path(model_id: str) -> str:
    """The local folder of a `builtin:<name>` id; any other model id is returned unchanged.

    Raises:
        ConfigError: the name after `builtin:` is unknown, or its files are missing from the install.
    """
    if not model_id.startswith(BUILTIN_PREFIX):
        return model_id
    known = {model.name: model for model in list_builtin_models()}
    model = known.get(model_id)
    if model is None:
        raise ConfigError(
            f"unknown built-in model {model_id!r}",
            where="model_id",
            fix=f"use one of: {', '.join(sorted(known))} (or a Hugging Face id or a local folder)",
        )
    if model.num_parameters is None:
        raise ConfigError(
            f"the files of built-in model {model_id!r} are missing from {model.path}",
            where="model_id",
            fix=f"reinstall grpokit, or rebuild it: python -m grpokit.tasks.{model.build_module}",
        )
    return str(model.path)


def _count_safetensors_parameters(path: Path) -> int:
    """Sum of tensor sizes from the file's JSON header (8-byte little-endian length, then the header)."""
    with path.open("rb") as file:
        (header_length,) = struct.unpack("<Q", file.read(8))
        header = json.loads(file.read(header_length))
    return sum(math.prod(entry["shape"]) for name, entry in header.items() if name != "__metadata__")
