"""Stratified folds, saved once so that tuning, training and re-runs all use the same split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold

from pipeline import layout
from pipeline.acquire.index import ImageIndex
from pipeline.atomic import write_atomically
from pipeline.config import Config, ConfigError
from pipeline.tables import read_id_csv


def assign_folds(train: pd.DataFrame, n_splits: int, seed: int) -> pd.DataFrame:
    """A table (id, label, fold) giving every training image one validation fold."""
    folds = np.zeros(len(train), dtype=np.int64)
    splitter = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    for fold, (_, validation) in enumerate(splitter.split(np.zeros(len(train)), train["label"])):
        folds[validation] = fold
    return pd.DataFrame(
        {"id": train["id"].astype(str).to_numpy(), "label": train["label"].to_numpy(), "fold": folds}
    )


def load_or_assign_folds(train: pd.DataFrame, n_splits: int, seed: int, path: Path) -> pd.Series:
    """The fold of each row of `train` (aligned to its index), from the saved file at `path`;
    assigned and saved there (whole, then renamed) on first use. A saved split of other images is
    refused, never overwritten: the runs trained on it depend on it."""
    keys = train["id"].astype(str) + "/" + train["label"].astype(str)
    if path.is_file():
        saved = read_id_csv(path)
        saved_keys = saved["id"] + "/" + saved["label"].astype(str)
        if set(saved_keys) != set(keys):
            raise layout.SplitMismatchError(
                f"the fold split {path} was made from other images ({len(saved):,}) than the index holds "
                f"({len(train):,}): if the competition's images really changed, move that file aside "
                "(runs trained on it no longer match) and train again; otherwise run `index --rebuild`"
            )
        return pd.Series(
            keys.map(dict(zip(saved_keys, saved["fold"], strict=True))).to_numpy(), index=train.index
        )
    table = assign_folds(train, n_splits, seed)
    write_atomically(path, lambda p: table.to_csv(p, index=False))
    return pd.Series(table["fold"].to_numpy(), index=train.index)


def holdout_folds(config: Config) -> int:
    """k of the k-fold split whose fold 0 is the holdout validation set (1 / validation_fraction)."""
    return max(2, round(1 / config.train.validation_fraction))


def check_split(config: Config, index: ImageIndex, holdout: bool, classes: tuple[str, ...] = ()) -> None:
    """Refuse, before any work, a split with more folds than the smallest class has images."""
    k = holdout_folds(config) if holdout else config.train.folds
    counts = index.train["label"].value_counts()
    if not len(counts) or counts.min() >= k:
        return
    fewest, smallest = int(counts.min()), counts.idxmin()
    name = classes[smallest] if len(classes) > smallest else smallest
    if fewest < 2:  # no split can put it on both sides
        raise ConfigError(
            f"class {name} has {fewest} training image: every class needs 2 or more (one to train on, "
            "one to validate); add images of it, or leave it out of the training data"
        )
    remedy = (
        f"set train.validation_fraction to {1 / fewest:.2f} or more"
        if holdout
        else f"use --folds {fewest} or fewer"
    )
    setting = "train.validation_fraction" if holdout else "train.folds"
    raise ConfigError(
        f"{setting} asks for {k} folds, but class {name} has only {fewest} training images: {remedy}"
    )


def kfold_assignment(config: Config, index: ImageIndex) -> pd.Series:
    """The fold of every training image under the configured k-fold split (train.folds)."""
    k = config.train.folds
    return load_or_assign_folds(index.train, k, config.data.seed, layout.folds_file(config, k))


def holdout_split(config: Config, index: ImageIndex) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, validation): fold 0 of the saved stratified k-fold split with k = 1 / validation_fraction."""
    k = holdout_folds(config)
    folds = load_or_assign_folds(index.train, k, config.data.seed, layout.folds_file(config, k))
    return index.train[folds != 0], index.train[folds == 0]
