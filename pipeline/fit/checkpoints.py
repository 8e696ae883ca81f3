"""Keras' BackupAndRestore checkpoints made safe on a full disk: checked before a phase resumes
from them, and never written onto a disk without room for them.

The one place that knows the names of the files Keras writes in a backup folder (a private
detail of keras.callbacks.BackupAndRestore; tests/unit/test_upstream_seams.py fails loudly when
they change).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import keras
import numpy as np

from pipeline.atomic import DiskFullError

WEIGHTS = "latest.weights.h5"  # what BackupAndRestore writes after each epoch
METADATA = "training_metadata.json"  # {"epoch": ...}
PREVIOUS = ".bkp"  # with double_checkpoint=True, the checkpoint before it: <name>.bkp
HEADROOM = 1.2  # free space kept above a checkpoint's estimated size


def backup_callback(folder: Path) -> keras.callbacks.BackupAndRestore:
    """Keras' checkpoint of every epoch in `folder`, keeping the one before it as well."""
    return keras.callbacks.BackupAndRestore(str(folder), delete_checkpoint=True, double_checkpoint=True)


def _readable(weights: Path, metadata: Path) -> bool:
    import h5py

    try:
        json.loads(metadata.read_text())["epoch"]
        with h5py.File(weights, "r") as opened:
            opened.visititems(lambda _, item: item[()] if isinstance(item, h5py.Dataset) else None)
    except Exception:  # h5py raises OSError, RuntimeError, KeyError... on a damaged file
        return False
    return True


def check_backup(folder: Path) -> str:
    """Make the checkpoint in `folder` one Keras can resume from, before the phase starts: a
    damaged latest checkpoint is replaced by the previous one when that one reads whole, else the
    folder is set aside (renamed) and the phase starts again. Returns what was done, '' if nothing."""
    weights, metadata = folder / WEIGHTS, folder / METADATA
    if not folder.is_dir() or (not weights.exists() and not metadata.exists()):
        return ""
    if _readable(weights, metadata):
        return ""
    previous = weights.with_name(WEIGHTS + PREVIOUS), metadata.with_name(METADATA + PREVIOUS)
    if _readable(*previous):
        for kept, damaged in zip(previous, (weights, metadata), strict=True):
            shutil.copyfile(kept, damaged)
        return f"the checkpoint in {folder} was damaged (a full disk?): resuming from the one before it"
    aside = folder.with_name(f"{folder.name}.damaged-{time.strftime('%Y%m%dT%H%M%S')}")
    folder.rename(aside)
    return f"the checkpoint in {folder} was damaged (a full disk?): set aside as {aside.name}; the phase starts again"


def checkpoint_bytes(model: keras.Model) -> int:
    """An estimate of one checkpoint's size: the model's and its optimizer's variables."""
    variables = list(model.weights) + list(getattr(model.optimizer, "variables", None) or [])
    return sum(
        int(np.prod(v.shape)) * np.dtype(keras.backend.standardize_dtype(v.dtype)).itemsize for v in variables
    )


class DiskSpaceGuard(keras.callbacks.Callback):
    """Stops training with a DiskFullError before a checkpoint is written to a disk without room for
    it (h5py can crash the process on a full disk and leave a file no one can read). Place it
    before the BackupAndRestore callback: callbacks run in list order."""

    def __init__(self, folder: Path):
        super().__init__()
        self.folder = folder

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        needed = int(HEADROOM * checkpoint_bytes(self.model))
        existing = self.folder if self.folder.exists() else self.folder.parent
        while not existing.exists():
            existing = existing.parent
        free = shutil.disk_usage(existing).free
        if free < needed:
            raise DiskFullError(
                f"the disk holding {self.folder} has {free / 2**20:,.0f} MB free, and the checkpoint of "
                f"epoch {epoch + 1} needs about {needed / 2**20:,.0f} MB: free some space (or set "
                "--runs-root to a larger disk) and run the same command again; it resumes from the last "
                "saved epoch"
            )
