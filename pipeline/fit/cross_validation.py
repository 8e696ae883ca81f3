"""Stratified k-fold training: one two-phase run per fold, out-of-fold predictions, CV scores."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import keras
import pandas as pd

from pipeline import layout
from pipeline.acquire.index import ImageIndex
from pipeline.competitions import Competition
from pipeline.config import Config
from pipeline.fit.metrics import binary_scores
from pipeline.fit.splits import kfold_assignment
from pipeline.fit.train import train_run


@dataclass(frozen=True)
class CrossValidation:
    """The folds' runs, the out-of-fold predictions and the score table (one row a fold, then 'all')."""

    run_dir: Path
    oof: pd.DataFrame  # id, label, fold, probability
    scores: pd.DataFrame


def train_kfold(
    config: Config,
    competition: Competition,
    index: ImageIndex,
    callbacks: Sequence[keras.callbacks.Callback] = (),
) -> CrossValidation:
    """Train every fold (finished folds are skipped), then score the out-of-fold predictions.

    With `train.time_budget`, no fold is started once the time left is less than the longest fold
    so far: the folds trained by then form the run (a Kaggle session ends at its limit, killed).
    """
    k = config.train.folds
    folds = kfold_assignment(config, index)
    run_dir = layout.kfold_run_dir(config)
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
        result = train_run(
            config,
            competition,
            index.train[folds != fold],
            index.train[folds == fold],
            layout.fold_dir(run_dir, fold),
            callbacks,
        )
        longest = max(longest, time.monotonic() - fold_started)
        predictions = pd.read_csv(result.run_dir / "validation_predictions.csv", dtype={"id": str})
        oof_parts.append(predictions.assign(fold=fold))
        rows.append({"fold": str(fold), **{k_: v for k_, v in result.metrics.items() if k_ != "seconds"}})
    oof = pd.concat(oof_parts, ignore_index=True)
    rows.append({"fold": "all", **binary_scores(oof["label"].to_numpy(), oof["probability"].to_numpy())})
    scores = pd.DataFrame(rows)
    oof.to_csv(run_dir / "oof.csv", index=False)
    scores.to_csv(run_dir / "cv.csv", index=False)
    (run_dir / "cv.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(
        "Cross-validation (out-of-fold):\n" + scores.to_string(index=False, float_format=lambda v: f"{v:.4f}")
    )
    return CrossValidation(run_dir, oof, scores)
