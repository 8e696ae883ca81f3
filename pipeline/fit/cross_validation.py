"""Stratified k-fold training: one two-phase run per fold, out-of-fold predictions, CV scores."""

from __future__ import annotations

import time
from collections.abc import Sequence

import keras
import pandas as pd

from pipeline import layout
from pipeline.acquire.index import ImageIndex
from pipeline.competitions import Competition
from pipeline.config import Config
from pipeline.fit.metrics import from_columns, scores
from pipeline.fit.pseudo import describe, pseudo_labels, with_pseudo_labels
from pipeline.fit.splits import kfold_assignment
from pipeline.fit.train import train_run
from pipeline.run import FOLD_PREFIX, Run


def train_kfold(
    config: Config,
    competition: Competition,
    index: ImageIndex,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    folds: Sequence[int] | None = None,
) -> Run:
    """Train every fold (finished folds are skipped), then score the out-of-fold predictions; return
    the run (its folds, oof.csv and cv.csv inside). `folds` names a share of them (a shard of a
    kernel group): those alone are trained, and the run is scored once every fold is there.

    With `train.time_budget`, no fold is started once the time left is less than the longest fold
    so far: the folds trained by then form the run (a Kaggle session ends at its limit, killed).
    """
    k = config.train.folds
    assignment = kfold_assignment(config, index)
    pseudo = pseudo_labels(config, index.test, competition.num_classes)
    if len(pseudo):
        print(describe(pseudo, len(index.test), config.train.pseudo_label))
    run = Run(layout.kfold_run_dir(config))
    started, longest = time.monotonic(), 0.0
    for position, fold in enumerate(range(k) if folds is None else sorted(folds)):
        left = config.train.time_budget - (time.monotonic() - started)
        if config.train.time_budget and position and left < longest:
            print(
                f"Time budget: {left:.0f} s left, a fold takes up to {longest:.0f} s; stopping before fold {fold}."
            )
            break
        print(f"=== Fold {fold + 1}/{k} ===")
        fold_started = time.monotonic()
        train_run(
            config,
            competition,
            with_pseudo_labels(index.train[assignment != fold], pseudo),  # never on the validation side
            index.train[assignment == fold],
            run.fold(fold),
            callbacks,
        )
        longest = max(longest, time.monotonic() - fold_started)
    if folds is None or all(run.fold(fold).is_finished for fold in range(k)):
        score_folds(run)
    return run


def score_folds(run: Run) -> pd.DataFrame:
    """Score the out-of-fold predictions of the run's finished folds, per fold and all together;
    write oof.csv and cv.csv; print and return the table."""
    members = [member for member in run.members() if member.has_validation]
    oof_parts, rows = [], []
    for member in members:
        fold = member.name.removeprefix(FOLD_PREFIX)
        oof_parts.append(member.read_validation().assign(fold=int(fold)))
        rows.append({"fold": fold, **{k: v for k, v in member.read_metrics().items() if k != "seconds"}})
    oof = pd.concat(oof_parts, ignore_index=True)
    rows.append({"fold": "all", **scores(oof["label"].to_numpy(), from_columns(oof))})
    run.write_cross_validation(oof, rows)
    table = pd.DataFrame(rows)
    print(
        "Cross-validation (out-of-fold):\n" + table.to_string(index=False, float_format=lambda v: f"{v:.4f}")
    )
    return table
