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
from pipeline.run import Run


def train_kfold(
    config: Config,
    competition: Competition,
    index: ImageIndex,
    callbacks: Sequence[keras.callbacks.Callback] = (),
) -> Run:
    """Train every fold (finished folds are skipped), then score the out-of-fold predictions; return
    the run (its folds, oof.csv and cv.csv inside).

    With `train.time_budget`, no fold is started once the time left is less than the longest fold
    so far: the folds trained by then form the run (a Kaggle session ends at its limit, killed).
    """
    k = config.train.folds
    folds = kfold_assignment(config, index)
    pseudo = pseudo_labels(config, index.test, competition.num_classes)
    if len(pseudo):
        print(describe(pseudo, len(index.test), config.train.pseudo_label))
    run = Run(layout.kfold_run_dir(config))
    oof_parts, rows = [], []
    started, longest = time.monotonic(), 0.0
    for fold in range(k):
        left = config.train.time_budget - (time.monotonic() - started)
        if config.train.time_budget and fold and left < longest:
            print(
                f"Time budget: {left:.0f} s left, a fold takes up to {longest:.0f} s; stopping at {fold} of {k} folds."
            )
            break
        print(f"=== Fold {fold + 1}/{k} ===")
        fold_started = time.monotonic()
        member = train_run(
            config,
            competition,
            with_pseudo_labels(index.train[folds != fold], pseudo),  # never on the validation side
            index.train[folds == fold],
            run.fold(fold),
            callbacks,
        )
        longest = max(longest, time.monotonic() - fold_started)
        oof_parts.append(member.read_validation().assign(fold=fold))
        rows.append(
            {"fold": str(fold), **{k_: v for k_, v in member.read_metrics().items() if k_ != "seconds"}}
        )
    oof = pd.concat(oof_parts, ignore_index=True)
    rows.append({"fold": "all", **scores(oof["label"].to_numpy(), from_columns(oof))})
    run.write_cross_validation(oof, rows)
    table = pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.4f}")
    print("Cross-validation (out-of-fold):\n" + table)
    return run
