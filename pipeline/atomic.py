"""Files that later commands trust are written whole to a temporary name, then renamed."""

from __future__ import annotations

import errno
import os
import re
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any


def write_atomically(path: Path, write: Callable[[Path], Any]) -> Path:
    """Call `write(temporary path)` beside `path`, then rename it to `path`: readers see the old
    file or the whole new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # One temporary name per process and call (two processes writing the same file must not
    # rename each other's half-written copy), with the same ending: Keras checks .weights.h5.
    partial = path.with_name(f".partial-{os.getpid()}-{uuid.uuid4().hex[:8]}-{path.name}")
    try:
        write(partial)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def write_text(path: Path, text: str) -> Path:
    """Write `text` to `path` atomically."""
    return write_atomically(path, lambda p: p.write_text(text))


class DiskFullError(OSError):
    """The disk cannot hold the next file a command must write; the message says where and how much."""

    def __init__(self, message: str):
        super().__init__(errno.ENOSPC, message)

    def __str__(self) -> str:
        return self.strerror


_SHORT_WRITE = re.compile(r"\d+ requested and \d+ written")  # numpy's tofile/save on a full disk
_ROOTS = "--data-root / --runs-root / --submissions-root"


def disk_error_message(error: OSError) -> str | None:
    """One sentence for an error of the disk itself: full (ours, the OS's, h5py's, a short write),
    read-only, or not ours to write; None for any other OSError."""
    if isinstance(error, DiskFullError):
        return str(error)
    text = str(error)
    where = f" {error.filename}" if error.filename else ""
    if (
        error.errno == errno.ENOSPC
        or "No space left on device" in text
        or "errno = 28" in text
        or _SHORT_WRITE.search(text)
    ):
        return (
            f"the disk filled up{' while writing' + where if where else ''}: free some space there (or "
            f"point {_ROOTS} to a larger disk) and run the same command again; it continues where it stopped"
        )
    if error.errno == errno.EROFS:
        return f"{where.strip() or 'a folder it writes'} is on a read-only disk: point {_ROOTS} to a writable folder"
    if error.errno in (errno.EACCES, errno.EPERM) and error.filename:
        return f"no permission to write {where.strip()}: point {_ROOTS} to a folder of yours, or fix its permissions"
    return None


def require_writable(*folders: Path) -> None:
    """Refuse, before any work, folders that cannot be written: a file is created and removed in
    each (or in its nearest existing parent, so no folder is made for a command that fails)."""
    for folder in folders:
        existing = next(p for p in [folder, *folder.parents] if p.exists() or p == p.parent)
        try:
            with tempfile.TemporaryFile(dir=existing):
                pass
        except OSError as error:
            raise OSError(error.errno, error.strerror, str(folder)) from error
