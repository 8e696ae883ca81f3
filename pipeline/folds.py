"""Stratified folds, saved once so that tuning, training and re-runs all use the same split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold


def assign_folds(train: pd.DataFrame, n_splits: int, seed: int) -> pd.DataFrame:
    """A table (id, label, fold) giving every training image one validation fold."""
    folds = np.zeros(len(train), dtype=np.int64)
    splitter = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    for fold, (_, validation) in enumerate(splitter.split(np.zeros(len(train)), train["label"])):
        folds[validation] = fold
    return pd.DataFrame(
        {"id": train["id"].astype(str).to_numpy(), "label": train["label"].to_numpy(), "fold": folds}
    )


def folds_file(competition_dir: Path, n_splits: int, seed: int) -> Path:
    """Where the split with these settings is saved."""
    return competition_dir / f"folds-{n_splits}-seed{seed}.csv"


def load_or_assign_folds(train: pd.DataFrame, n_splits: int, seed: int, competition_dir: Path) -> pd.Series:
    """The fold of each row of `train` (aligned to its index), from the saved file when it matches."""
    path = folds_file(competition_dir, n_splits, seed)
    keys = train["id"].astype(str) + "/" + train["label"].astype(str)
    if path.is_file():
        saved = pd.read_csv(path, dtype={"id": str})
        saved_keys = saved["id"] + "/" + saved["label"].astype(str)
        if set(saved_keys) == set(keys):
            return pd.Series(
                keys.map(dict(zip(saved_keys, saved["fold"], strict=True))).to_numpy(), index=train.index
            )
        print(f"{path} does not match the current index (images changed); assigning the folds again.")
    table = assign_folds(train, n_splits, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, index=False)
    return pd.Series(table["fold"].to_numpy(), index=train.index)
