"""Is a checkpoint whole? Its manifest (written with the completion marker) and a look at each file.

A completion marker says the trainer finished writing a checkpoint; it cannot say that the files are
still whole (a disk that filled up after, a copy that was cut short, a sync from S3 that stopped half
way). So the marker carries a manifest, `manifest(checkpoint)`: every file's size, and the SHA-256 of
each file up to `CHECKSUM_MAX_BYTES` (the adapter, optimizer state, trainer state and RNG state of a
LoRA run; full-model weights are checked by size and structure only, to keep saving fast).

`checkpoint_problem(checkpoint)` compares the files with the manifest and also checks each file's
structure (which catches damage in checkpoints made without a manifest, by plain TRL or an older
grpokit): a `.safetensors` file's header and length, a `.json` file parses, a torch `.pt` / `.pth` /
`.bin` zip archive has its central directory (a cut-short file does not). It returns one line saying
what is wrong, or None.
"""

from __future__ import annotations

import hashlib
import json
import struct
import zipfile
from pathlib import Path
from typing import Any

from grpokit.outputs.files import COMPLETE_MARKER, TEMPORARY_SUFFIX

CHECKSUM_MAX_BYTES = 256 * 1024 * 1024
ZIP_SUFFIXES = (".pt", ".pth", ".bin")
_READ_CHUNK = 1 << 20


def _files(checkpoint: Path) -> list[Path]:
    return sorted(
        path
        for path in checkpoint.rglob("*")
        if path.is_file() and path.name != COMPLETE_MARKER and not path.name.endswith(TEMPORARY_SUFFIX)
    )


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_READ_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def manifest(checkpoint: Path) -> dict[str, Any]:
    """`{"files": {relative path: size}, "sha256": {relative path: hex digest}}` for every file of `checkpoint`."""
    sizes, digests = {}, {}
    for path in _files(checkpoint):
        name = path.relative_to(checkpoint).as_posix()
        sizes[name] = path.stat().st_size
        if sizes[name] <= CHECKSUM_MAX_BYTES:
            digests[name] = sha256_of(path)
    return {"files": sizes, "sha256": digests}


def _manifest_problem(checkpoint: Path, marker: dict[str, Any]) -> str | None:
    sizes = marker.get("files")
    if not isinstance(sizes, dict):
        return None  # a marker without a manifest (an older grpokit): the structure checks still run
    for name, size in sizes.items():
        path = checkpoint / name
        if not path.is_file():
            return f"{name} is missing"
        actual = path.stat().st_size
        if actual != size:
            return f"{name} is {actual:,} bytes; {size:,} were written"
    for name, digest in (marker.get("sha256") or {}).items():
        if sha256_of(checkpoint / name) != digest:
            return f"{name} does not match the checksum written with it"
    return None


def _safetensors_problem(path: Path) -> str | None:
    size = path.stat().st_size
    with path.open("rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            return "it has no header"
        (header_length,) = struct.unpack("<Q", head)
        if header_length > size - 8:
            return "its header runs past the end of the file"
        try:
            header = json.loads(handle.read(header_length))
        except ValueError:
            return "its header is not readable"
    ends = [entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__" and isinstance(entry, dict)]
    expected = 8 + header_length + max(ends, default=0)
    if size < expected:
        return f"it is cut short ({size:,} of {expected:,} bytes)"
    return None


def _file_problem(path: Path) -> str | None:
    if path.suffix == ".safetensors":
        return _safetensors_problem(path)
    if path.suffix == ".json":
        try:
            json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError):
            return "it is not valid JSON"
        return None
    if path.suffix in ZIP_SUFFIXES:
        with path.open("rb") as handle:
            is_zip = handle.read(2) == b"PK"
        if is_zip:  # torch.save's format; an old pickle-only file is left alone
            try:
                zipfile.ZipFile(path).close()
            except zipfile.BadZipFile:
                return "it is cut short (its zip directory is missing)"
    return None


def checkpoint_problem(checkpoint: Path) -> str | None:
    """What is wrong with `checkpoint` in one line (`model.safetensors is 1,024 bytes; 3,400 were written`), or None."""
    marker_path = checkpoint / COMPLETE_MARKER
    if marker_path.is_file():
        try:
            marker = json.loads(marker_path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError):
            return f"its completion marker {COMPLETE_MARKER} is not readable"
        problem = _manifest_problem(checkpoint, marker if isinstance(marker, dict) else {})
        if problem is not None:
            return problem
    for path in _files(checkpoint):
        try:
            problem = _file_problem(path)
        except OSError as error:
            problem = f"it cannot be read ({error.strerror or error})"
        if problem is not None:
            return f"{path.relative_to(checkpoint).as_posix()}: {problem}"
    return None
