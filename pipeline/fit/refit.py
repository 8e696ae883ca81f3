"""Refit on all the data: after the folds, models trained on every training image.

The folds give the out-of-fold predictions, the CV score and, per phase, the epoch at which each
fold's validation loss was best. A refit model trains on 100% of the images (none held out, so no
early stopping) for the median of those epoch counts, with its own seed; `predict` averages the
refit models with (or instead of) the fold models, while the folds' OOF predictions still choose
the averaging space, the clip value and the threshold.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence

import keras
import numpy as np

from pipeline.acquire.index import ImageIndex
from pipeline.competitions import Competition
from pipeline.config import Config
from pipeline.fit.phases import PHASES
from pipeline.fit.pseudo import pseudo_labels, with_pseudo_labels
from pipeline.fit.train import train_run
from pipeline.run import Run


class NoFoldsError(FileNotFoundError):
    """A refit was asked of a run with no finished fold to take its epoch counts from."""


def best_epochs(member: Run) -> dict[str, int]:
    """Per phase, the epochs a finished member needed to reach its best validation loss (a phase
    that never beat the one before, whose weights were not kept, counts 0)."""
    counts, previous_best = {}, np.inf
    for phase in PHASES:
        history = member.read_phase_history(phase)
        if history.empty or "val_loss" not in history:
            counts[phase] = 0
            continue
        losses = history["val_loss"].to_numpy()
        best = int(np.argmin(losses))
        counts[phase] = best + 1 if losses[best] <= previous_best else 0
        previous_best = min(previous_best, float(losses[best]))
    return counts


def chosen_epochs(members: Sequence[Run]) -> dict[str, int]:
    """Per phase, the median over the members of `best_epochs` (at least one head epoch)."""
    counts = [best_epochs(m) for m in members]
    chosen = {phase: int(np.ceil(np.median([c[phase] for c in counts]))) for phase in PHASES}
    return {**chosen, "head": max(1, chosen["head"])}


def train_refits(
    config: Config,
    competition: Competition,
    index: ImageIndex,
    run: Run,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    deadline: float | None = None,
    only: Sequence[int] | None = None,
    epochs: dict[str, int] | None = None,
) -> list[Run]:
    """Train `train.refit` models on every training image (finished ones are kept); return them.
    `only` names a share of them (a shard of a kernel group); `epochs` the epochs per phase when
    the folds that chose them are not here (a shard's refits after its folds were gathered).

    With a `deadline` (time.monotonic() seconds), no refit is started that would not end before it,
    judged by the longest fold scaled to all the images (a Kaggle session ends at its limit)."""
    members = [m for m in run.members() if m.has_validation]
    if not members and epochs is None:
        raise NoFoldsError(
            f"{run.path} has no finished fold to take epoch counts from: run `make train` (k folds) first."
        )
    epochs = epochs or chosen_epochs(members)
    print(
        f"Refit: {config.train.refit if only is None else len(only)} model(s) on all {len(index.train):,} images, "
        f"{epochs['head']} head + {epochs['fine']} fine epochs (the folds' median best)"
    )
    held_out = max((len(m.read_validation()) for m in members), default=0)
    scale = len(index.train) / max(1, len(index.train) - held_out)  # a refit sees every image
    expected = max((m.read_metrics().get("seconds", 0.0) for m in members), default=0.0) * scale
    refits = []
    for k in range(config.train.refit) if only is None else sorted(only):
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left < expected and not run.refit(k).is_finished:
            print(
                f"Time budget: {left:.0f} s left, a refit takes about {expected:.0f} s; {k} refit model(s)."
            )
            break
        refit = dataclasses.replace(
            config,
            data=dataclasses.replace(config.data, seed=config.data.seed + 1 + k),
            train=dataclasses.replace(config.train, head_epochs=epochs["head"], fine_epochs=epochs["fine"]),
        )
        everything = with_pseudo_labels(
            index.train, pseudo_labels(config, index.test, competition.num_classes)
        )
        refits.append(train_run(refit, competition, everything, None, run.refit(k), callbacks))
    return refits
