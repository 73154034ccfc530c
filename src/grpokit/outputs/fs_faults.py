"""Filesystem faults as one message: the path, the cause (no space left, read-only, not a directory), the fix.

A full disk shows up in many forms: `OSError(ENOSPC)` from Python, `SafetensorError: ... IoError(Os
{ code: 28, ... })` from safetensors, `RuntimeError: ... PytorchStreamWriter failed writing file` from
`torch.save`. `filesystem_fault(error)` recognises each of them (walking the exception's causes)
and returns a `FilesystemError` naming the path and the cause; `filesystem_faults(...)` wraps a run
with that translation and first checks that its folders can be written, so a read-only or misnamed
output path is reported before the model is loaded.

Nothing is lost: a checkpoint cut short by a full disk has no completion marker and is never
resumed; the run resumes from the last complete one once space is freed. Nothing is left behind
either: a folder the check created that is still empty when the run ends (the `checkpoints/` of a
run that failed before its first checkpoint) is removed again.
"""

from __future__ import annotations

import contextlib
import errno
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from grpokit.errors import GrpokitError

# errno -> (cause, fix); the exit code is 1 for a fault of the machine during the run, 2 for a bad path.
CAUSES: dict[int, tuple[str, str, int]] = {
    errno.ENOSPC: ("no space left on the device", "free space there (or point output_dir / checkpoint_dir at a bigger disk)", 1),
    errno.EDQUOT: ("disk quota exceeded", "free space within your quota, or use another disk", 1),
    errno.EFBIG: ("file too large for this process's file size limit (ulimit -f)", "raise the limit (ulimit -f unlimited)", 1),
    errno.EIO: ("input/output error (a failing disk or a network filesystem that went away)", "check the disk or the mount", 1),
    errno.EROFS: ("the filesystem is read-only", "point output_dir / checkpoint_dir at a writable folder", 2),
    errno.EACCES: ("permission denied", "make the folder writable for this user, or use another one", 2),
    errno.EPERM: ("operation not permitted", "make the folder writable for this user, or use another one", 2),
    errno.ENOTDIR: ("part of the path is a file, not a directory", "remove or rename that file, or use another path", 2),
    errno.EEXIST: ("a file is in the way where a directory should be", "remove or rename that file, or use another path", 2),
    errno.EISDIR: ("a directory is in the way where a file should be", "remove or rename that directory", 2),
    errno.ENAMETOOLONG: ("the path is too long", "use a shorter path", 2),
}
# How libraries that do not raise OSError say it (safetensors' Rust errors, torch's C++ writer).
MESSAGE_PATTERNS = (
    (re.compile(r"No space left on device|os error 28\b|code: 28\b", re.IGNORECASE), errno.ENOSPC),
    (re.compile(r"Disk quota exceeded|os error 122\b|code: 122\b", re.IGNORECASE), errno.EDQUOT),
    (re.compile(r"Read-only file system|os error 30\b|code: 30\b", re.IGNORECASE), errno.EROFS),
    (re.compile(r"File too large|os error 27\b|code: 27\b", re.IGNORECASE), errno.EFBIG),
)
WRITE_FAILED = re.compile(r"file write failed|failed writing file|unexpected pos|Error while serializing", re.IGNORECASE)
LOW_SPACE_BYTES = 64 * 1024 * 1024  # a failed write with less free than this is taken for a full disk


class FilesystemError(GrpokitError):
    """A folder or file grpokit must write cannot be written. `exit_code` 1 (full disk) or 2 (bad path)."""

    def __init__(self, what: str, *, where: str | None = None, fix: str | None = None, exit_code: int = 1) -> None:
        super().__init__(what, where=where, fix=fix)
        self.exit_code = exit_code


def _causes(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _errno_of(error: BaseException, fallback_path: Path | None) -> tuple[int, str | None] | None:
    """(errno, path) of the filesystem fault behind `error`, or None when it is not one."""
    for cause in _causes(error):
        if isinstance(cause, OSError) and cause.errno in CAUSES:
            return cause.errno, cause.filename
    text = " ".join(str(cause) for cause in _causes(error))
    for pattern, code in MESSAGE_PATTERNS:
        if pattern.search(text):
            return code, None
    if fallback_path is not None and WRITE_FAILED.search(text) and _free_bytes(fallback_path) < LOW_SPACE_BYTES:
        return errno.ENOSPC, None  # torch says only "file write failed"; the disk says why
    return None


def _free_bytes(path: Path) -> int:
    for candidate in (path, *path.parents):
        with contextlib.suppress(OSError):
            return shutil.disk_usage(candidate).free
    return 1 << 62


def _blocking_file(path: Path) -> Path | None:
    """The first part of `path` that exists and is not a directory (what makes it 'not a directory')."""
    for candidate in [*reversed(path.parents), path]:
        if candidate.exists() and not candidate.is_dir():
            return candidate
    return None


def filesystem_fault(error: BaseException, path: str | Path | None = None) -> FilesystemError | None:
    """`error` as one `FilesystemError` when a filesystem fault caused it (`path`: where the run was writing), else None."""
    fallback = Path(path) if path is not None else None
    found = _errno_of(error, fallback)
    if found is None:
        return None
    code, filename = found
    cause, fix, exit_code = CAUSES[code]
    where = Path(filename) if filename else fallback
    if code in (errno.ENOTDIR, errno.EEXIST) and where is not None:
        blocking = _blocking_file(where)
        if blocking is not None:
            cause = f"{blocking} is a file, not a directory"
    if code == errno.ENOSPC and where is not None:
        fix += f" ({_free_bytes(where) // 2**20:,} MiB free now); then run the same command again: it resumes from the last complete checkpoint"
    return FilesystemError(f"cannot write {where or 'a file'}: {cause}", where=str(where) if where else None, fix=fix, exit_code=exit_code)


def check_writable_directory(path: str | Path) -> list[Path]:
    """Create `path` if needed and write (then remove) one small file in it.

    Returns the folders this created (`path` and missing parents, outermost first).

    Raises:
        FilesystemError: the folder cannot be created or written (read-only, a file in the way, permissions).
    """
    path = Path(path)
    missing = [folder for folder in (path, *path.parents) if not folder.exists()][::-1]
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".grpokit-write-check-"):
            pass
    except OSError as error:
        if error.errno not in CAUSES:
            raise
        error.filename = error.filename or str(path)
        raise filesystem_fault(error, path) from None
    return missing


def remove_empty_directories(folders: list[Path]) -> None:
    """Remove each of `folders` that is empty, innermost first (one in use or holding anything stays)."""
    for folder in reversed(folders):
        with contextlib.suppress(OSError):
            folder.rmdir()


@contextlib.contextmanager
def writable_directories(*directories: str | Path) -> Iterator[None]:
    """Check that `directories` can be written; on the way out, remove the ones this created that stayed empty."""
    created: list[Path] = []
    try:
        for directory in directories:
            created += check_writable_directory(directory)
        yield
    finally:
        remove_empty_directories(created)


@contextlib.contextmanager
def filesystem_faults(*directories: str | Path) -> Iterator[None]:
    """Check that `directories` can be written, then turn any filesystem fault inside into a `FilesystemError`.

    A folder the check created and the run left empty is removed when the run ends (`writable_directories`).
    """
    with writable_directories(*directories):
        try:
            yield
        except GrpokitError:
            raise
        except Exception as error:  # only filesystem faults are translated; the rest is re-raised as it is
            fault = filesystem_fault(error, directories[0] if directories else None)
            if fault is None:
                raise
            raise fault from error
