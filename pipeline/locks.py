"""One command at a time per folder: a competition's data folder, a run folder.

A lock file beside the work (`<folder>/.lock`, an OS lock released when its process ends, even
by kill -9) and a note of who holds it (`.lock.json`: PID, start time, command), so a second
command either waits, saying for whom, or refuses with the holder's PID and start time.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import filelock


class FolderInUseError(RuntimeError):
    """Another command holds the folder; the message names it and says what to do."""


def _holder(note: Path) -> str:
    try:
        info = json.loads(note.read_text())
        return f"PID {info['pid']} (started {info['started']}: {info['command']})"
    except (OSError, ValueError, KeyError):
        return "another command"


@contextlib.contextmanager
def exclusive(folder: Path, doing: str, wait: bool) -> Iterator[None]:
    """Hold `folder` for `doing` (e.g. 'training'); if another command holds it, wait for it
    (`wait`) or raise FolderInUseError naming it."""
    folder.mkdir(parents=True, exist_ok=True)
    lock, note = filelock.FileLock(folder / ".lock"), folder / ".lock.json"
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        holder = _holder(note)
        if not wait:
            raise FolderInUseError(
                f"{folder} is in use by {holder}; {doing} needs it alone. Wait for that command to "
                "finish (or stop it), or run again with --wait to wait for it."
            ) from None
        print(f"{folder} is in use by {holder}; waiting for it to finish before {doing} ...", flush=True)
        lock.acquire()
    try:
        started = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        note.write_text(json.dumps({"pid": os.getpid(), "started": started, "command": " ".join(sys.argv)}))
        yield
    finally:
        note.unlink(missing_ok=True)
        lock.release()


def is_held(folder: Path) -> bool:
    """True while another command holds `folder` (its lock is taken)."""
    path = folder / ".lock"
    if not path.is_file():
        return False
    lock = filelock.FileLock(path)
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        return True
    lock.release()
    return False
