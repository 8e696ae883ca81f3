"""Files that later commands trust are written whole to a temporary name, then renamed."""

from __future__ import annotations

import errno
import os
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


def disk_full_message(error: OSError) -> str | None:
    """One sentence for an error caused by a full disk (ours, the OS's or h5py's), else None."""
    if isinstance(error, DiskFullError):
        return str(error)
    text = str(error)
    if error.errno != errno.ENOSPC and "No space left on device" not in text and "errno = 28" not in text:
        return None
    where = f" while writing {error.filename}" if error.filename else ""
    return (
        f"the disk filled up{where}: free some space there (or point --runs-root / --data-root to a "
        "larger disk) and run the same command again; it continues where it stopped"
    )
