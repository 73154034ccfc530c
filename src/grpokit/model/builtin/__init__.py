"""Models that ship inside the package, named `builtin:<name>` in a config's `model_id`.

Each lives in a folder next to this file (safetensors weights, config, tokenizer, README), so demos
and tests run offline. `build_tiny.py` rebuilds `builtin:tiny`.

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

# name -> description. Explicit on purpose: a stray folder here is not a model.
_BUILTIN_DESCRIPTIONS = {
    "tiny": (
        "0.9 M parameter Qwen2 with a byte-level tokenizer and ChatML template, warm-started on "
        "2-digit addition (held-out accuracy about 0.5); for offline demos and tests"
    ),
}


@dataclass(frozen=True)
class BuiltinModel:
    name: str  # as written in a config: "builtin:tiny"
    path: Path
    description: str
    num_parameters: int | None  # None when the weights file is missing (the model was never built)


def list_builtin_models() -> list[BuiltinModel]:
    """Every built-in model, with its parameter count read from the safetensors header (no weights loaded)."""
    models = []
    for short_name, description in _BUILTIN_DESCRIPTIONS.items():
        path = _HERE / short_name
        weights = path / "model.safetensors"
        models.append(
            BuiltinModel(
                name=BUILTIN_PREFIX + short_name,
                path=path,
                description=description,
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
            fix="reinstall grpokit, or rebuild it: python -m grpokit.model.builtin.build_tiny",
        )
    return str(model.path)


def _count_safetensors_parameters(path: Path) -> int:
    """Sum of tensor sizes from the file's JSON header (8-byte little-endian length, then the header)."""
    with path.open("rb") as file:
        (header_length,) = struct.unpack("<Q", file.read(8))
        header = json.loads(file.read(header_length))
    return sum(math.prod(entry["shape"]) for name, entry in header.items() if name != "__metadata__")
