"""The machinery under the recipe's phases: fitting one phase with its callbacks, logging, and
resuming (`Phases`). The recipe itself (model, optimizer, loss, schedule, phases) is
`pipeline.fit.train`, which reads top to bottom without this."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

import keras
import pandas as pd
import tensorflow as tf

from pipeline.atomic import write_atomically
from pipeline.config import Config
from pipeline.fit.checkpoints import DiskSpaceGuard, backup_callback, check_backup
from pipeline.run import Run

PHASES = ("head", "fine")


def fit_verbosity(interactive: bool) -> int:
    """1: Keras' per-step progress bar on a terminal; 2: one plain line per epoch in a log file."""
    return 1 if interactive else 2


class EpochLine(keras.callbacks.Callback):
    """One plain line per epoch, for logs (Keras' own verbose=2 takes two and shows every metric)."""

    def __init__(self, phase: str):
        super().__init__()
        self.phase, self.started = phase, 0.0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        shown = ", ".join(f"{k} {logs[k]:.4f}" for k in ("loss", "val_loss", "val_accuracy") if k in logs)
        seconds = time.perf_counter() - self.started
        print(
            f"phase {self.phase} epoch {epoch + 1}/{self.params['epochs']}: {shown} ({seconds:.0f} s)",
            flush=True,
        )


class Phases:
    """Resuming, in one place: which phases of a run are done, and the epoch each reached.

    A done phase is skipped and its end-of-phase weights loaded; an unfinished one runs (and
    resumes mid-way from Keras' BackupAndRestore checkpoint); its weights and the epoch it reached
    are saved once it ends."""

    def __init__(self, run: Run, model: keras.Model):
        self.run, self.model, self.state = run, model, run.read_state()

    def run_phase(self, phase: str, fit: Callable[[], int]) -> int:
        """Run `fit` (which returns the epoch reached) unless `phase` is done; return that epoch."""
        if phase in self.state:
            self.model.load_weights(self.run.weights_path(phase))
            return self.state[phase]
        reached = fit()
        write_atomically(self.run.weights_path(phase), self.model.save_weights)
        self.state = {**self.state, phase: reached}
        self.run.write_state(self.state)
        return reached

    @property
    def reached(self) -> int:
        """The epoch the timeline has reached so far."""
        return max(self.state.values(), default=0)


def fit_phase(
    phase: str,
    model: keras.Model,
    train_ds: tf.data.Dataset,
    val_ds: tf.data.Dataset | None,
    first_epoch: int,
    epochs: int,
    run: Run,
    config: Config,
    extra: Sequence[keras.callbacks.Callback],
    verbose: int,
    class_weight: dict[int, float] | None = None,
) -> int:
    """Fit one phase (`class_weight`: Keras' weights of the classes in the loss); return the epoch
    the timeline has reached after it."""
    if repaired := check_backup(run.backup_dir(phase)):
        print(f"warning: {repaired}.")
    callbacks = [
        DiskSpaceGuard(run.backup_dir(phase)),  # before the checkpoint is written, not in the middle
        backup_callback(run.backup_dir(phase)),
        # With EMA, validation, early stopping and the saved weights all see the averaged weights.
        *([keras.callbacks.SwapEMAWeights(swap_on_epoch=True)] if config.train.ema else []),
        *(  # a refit model has no validation images: it trains for the epochs it is given
            [
                keras.callbacks.EarlyStopping(
                    monitor="val_loss", patience=config.train.patience, restore_best_weights=True, verbose=0
                )
            ]
            if val_ds is not None
            else []
        ),
        keras.callbacks.CSVLogger(str(run.phase_history_path(phase)), append=True),
        keras.callbacks.TensorBoard(str(run.tensorboard_dir), write_graph=False),
        *([EpochLine(phase)] if verbose == 2 else []),
        *extra,
    ]
    start = time.perf_counter()
    history = model.fit(
        train_ds,
        validation_data=val_ds,
        initial_epoch=first_epoch,
        epochs=first_epoch + epochs,
        callbacks=callbacks,
        class_weight=class_weight,
        verbose=1 if verbose == 1 else 0,
        shuffle=False,  # the tf.data pipeline shuffles
    )
    reached = history.epoch[-1] + 1 if history.epoch else first_epoch + epochs
    ran_from = history.epoch[0] + 1 if history.epoch else reached  # after a resume: the epochs run now
    losses = history.history.get("val_loss", [])
    final = history.history.get("loss", [])
    best = (
        f"best val_loss {min(losses):.4f}"
        if losses
        else f"loss {final[-1]:.4f}"
        if final
        else "resumed at its end"
    )
    print(f"phase {phase}: epochs {ran_from}-{reached}, {best}, {time.perf_counter() - start:.0f} s")
    return reached


def phase_history(run: Run) -> pd.DataFrame:
    """Both phases' epochs in one table, with a `phase` column."""
    frames = [run.read_phase_history(phase).assign(phase=phase) for phase in PHASES]
    frames = [frame for frame in frames if len(frame)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def best_val_loss(run: Run, phase: str) -> float:
    """The lowest validation loss a phase reached (infinity when it has none)."""
    losses = run.read_phase_history(phase).get("val_loss", pd.Series(dtype=float))
    return float(losses.min()) if len(losses) else math.inf
