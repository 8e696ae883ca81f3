"""Fold-safe pseudo-labelling: test images a finished run predicts with high confidence, with its
hard label, to join every fold's training side (never its validation side, so the out-of-fold
score is computed on labelled images only)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline import layout
from pipeline.config import Config, ConfigError
from pipeline.fit.metrics import from_columns, hard_labels
from pipeline.run import Run


def pseudo_labels(config: Config, test: pd.DataFrame, num_classes: int) -> pd.DataFrame:
    """(id, path, label, width, height, weight) of the test images of `test` that the run `train.pseudo_label`
    predicted with a confidence of `train.pseudo_threshold` or more; empty when it is off.
    Refused in one sentence: a run that does not exist or has no test predictions, and a run of
    another competition, class count or test set."""
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
    _check_source(config, run, predictions, test, num_classes)
    by_id = predictions.set_index(predictions["id"].astype(str))
    known = test[test["id"].astype(str).isin(by_id.index)]
    p = from_columns(by_id.loc[known["id"].astype(str)])
    confidence = np.maximum(p, 1 - p) if p.ndim == 1 else p.max(axis=1)
    confident = confidence >= config.train.pseudo_threshold
    chosen = known[confident]
    return pd.DataFrame(
        {
            "id": "test:" + chosen["id"].astype(str),  # never the id of a training image
            "path": chosen["path"].to_numpy(),
            "label": hard_labels(p[confident]),
            "width": chosen["width"].to_numpy(),
            "height": chosen["height"].to_numpy(),
            "weight": config.train.pseudo_weight,
        }
    )


def _check_source(
    config: Config, run: Run, predictions: pd.DataFrame, test: pd.DataFrame, num_classes: int
) -> None:
    """Labels only from a run of this competition, its classes and its test images."""
    name = config.train.pseudo_label
    saved = run.read_config().get("competition") if run.config_path.is_file() else None
    if saved is not None and saved != config.competition:
        raise ConfigError(
            f"train.pseudo_label = {name!r} is a run of {saved}, not of {config.competition}: take "
            "pseudo-labels from a run of this competition"
        )
    columns = from_columns(predictions.head(1))
    classes = 2 if columns.ndim == 1 else columns.shape[1]
    if classes != num_classes:
        raise ConfigError(
            f"train.pseudo_label = {name!r} predicts {classes} classes, {config.competition} has "
            f"{num_classes}: take pseudo-labels from a run of this competition"
        )
    theirs, ours = set(predictions["id"].astype(str)), set(test["id"].astype(str))
    if theirs != ours:
        raise ConfigError(
            f"train.pseudo_label = {name!r} predicted {len(theirs):,} test ids, {len(theirs & ours):,} of "
            f"them among this competition's {len(ours):,}: predict again with that run (`predict --run {name}`)"
        )


def describe(pseudo: pd.DataFrame, total: int, name: str) -> str:
    """One line: how many test images were pseudo-labelled, and as what."""
    counts = pseudo["label"].value_counts().sort_index()
    shown = ", ".join(f"class {k}: {n:,}" for k, n in counts.head(12).items())
    more = f", {len(counts) - 12} more classes" if len(counts) > 12 else ""
    return (
        f"Pseudo-labels from {name}: {len(pseudo):,} of {total:,} test images "
        f"({shown or 'none'}{more}) join every fold's training side"
    )


def with_pseudo_labels(train: pd.DataFrame, pseudo: pd.DataFrame) -> pd.DataFrame:
    """A training side with the pseudo-labelled test images added (their weight column dropped:
    fine-tuning counts them as labelled images)."""
    if pseudo.empty:
        return train
    return pd.concat([train, pseudo[[c for c in train.columns if c in pseudo.columns]]], ignore_index=True)
