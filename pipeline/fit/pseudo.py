"""Fold-safe pseudo-labelling: test images a finished run predicts with high confidence, with its
hard label, to join every fold's training side (never its validation side, so the out-of-fold
score is computed on labelled images only)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline import layout
from pipeline.config import Config, ConfigError
from pipeline.run import Run


def pseudo_labels(config: Config, test: pd.DataFrame) -> pd.DataFrame:
    """(id, path, label, width, height, weight) of the test images of `test` that the run `train.pseudo_label`
    predicted with a confidence of `train.pseudo_threshold` or more; empty when it is off.
    A run that does not exist or has no test predictions is refused in one sentence."""
    name = config.train.pseudo_label
    if not name:
        return pd.DataFrame(columns=["id", "path", "label", "width", "height", "weight"])
    run = Run(layout.competition_runs(config) / name)
    predictions = run.read_test_predictions()
    if predictions is None:
        raise ConfigError(
            f"train.pseudo_label = {name!r}: {run.path} has no test predictions to take labels from: "
            f"run `predict --run {name}` (or `stack`) first"
        )
    probability = predictions.set_index(predictions["id"].astype(str))["probability"]
    known = test[test["id"].astype(str).isin(probability.index)]
    p = probability.loc[known["id"].astype(str)].to_numpy()
    confident = np.maximum(p, 1 - p) >= config.train.pseudo_threshold
    chosen = known[confident]
    return pd.DataFrame(
        {
            "id": "test:" + chosen["id"].astype(str),  # never the id of a training image
            "path": chosen["path"].to_numpy(),
            "label": (p[confident] >= 0.5).astype(int),
            "width": chosen["width"].to_numpy(),
            "height": chosen["height"].to_numpy(),
            "weight": config.train.pseudo_weight,
        }
    )


def describe(pseudo: pd.DataFrame, total: int, name: str) -> str:
    """One line: how many test images were pseudo-labelled, and as what."""
    counts = pseudo["label"].value_counts().to_dict()
    return (
        f"Pseudo-labels from {name}: {len(pseudo):,} of {total:,} test images "
        f"(class 0: {counts.get(0, 0):,}, class 1: {counts.get(1, 0):,}) join every fold's training side"
    )


def with_pseudo_labels(train: pd.DataFrame, pseudo: pd.DataFrame) -> pd.DataFrame:
    """A training side with the pseudo-labelled test images added (their weight column dropped:
    fine-tuning counts them as labelled images)."""
    if pseudo.empty:
        return train
    return pd.concat([train, pseudo[[c for c in train.columns if c in pseudo.columns]]], ignore_index=True)
