"""The submission ledger: every submission made from here, merged with Kaggle's scores."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd

COLUMNS = [
    "time",
    "competition",
    "file",
    "run",
    "cv_score",
    "status",
    "ref",
    "public_score",
    "private_score",
    "note",
]


def read_ledger(path: Path) -> pd.DataFrame:
    """The ledger, or an empty one with the right columns."""
    if not path.is_file():
        return pd.DataFrame(columns=COLUMNS, dtype=str)
    return pd.read_csv(path, dtype=str, keep_default_na=False)  # text throughout: scores may be blank


def record(path: Path, row: dict) -> pd.DataFrame:
    """Append one submission attempt (failed ones too) and save; returns the ledger."""
    ledger = read_ledger(path)
    entry = {column: str(row.get(column, "")) for column in COLUMNS}
    entry["time"] = entry["time"] or dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    ledger = pd.concat([ledger, pd.DataFrame([entry], dtype=str)], ignore_index=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    ledger.to_csv(path, index=False)
    return ledger


def merge_remote(ledger: pd.DataFrame, remote: list[dict], competition: str) -> pd.DataFrame:
    """Fill status and scores of this competition's rows from Kaggle's list of submissions (by reference)."""
    by_ref = {str(s["ref"]): s for s in remote}
    merged = ledger.copy()
    for i, row in merged.iterrows():
        found = by_ref.get(str(row["ref"]).removesuffix(".0"))
        if row["competition"] != competition or found is None:
            continue
        merged.at[i, "status"] = str(found["status"])
        merged.at[i, "public_score"] = "" if found["public_score"] is None else str(found["public_score"])
        merged.at[i, "private_score"] = "" if found["private_score"] is None else str(found["private_score"])
        if found.get("error"):
            merged.at[i, "note"] = str(found["error"])
    return merged


def plot_cv_against_public(ledger: pd.DataFrame, competition: str, path: Path) -> Path | None:
    """Save a PNG of CV score and public score of each scored submission over time; None if nothing to plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = ledger[(ledger["competition"] == competition)].copy()
    rows["public_score"] = pd.to_numeric(rows["public_score"], errors="coerce")
    rows["cv_score"] = pd.to_numeric(rows["cv_score"], errors="coerce")
    rows = rows.dropna(subset=["public_score"])
    if rows.empty:
        return None
    times = pd.to_datetime(rows["time"])
    figure, axis = plt.subplots(figsize=(7, 4))
    axis.plot(times, rows["cv_score"], "o-", label="CV (out-of-fold)")
    axis.plot(times, rows["public_score"], "s-", label="public leaderboard")
    axis.set_title(f"{competition}: CV against public score")
    axis.set_xlabel("submission time (UTC)")
    axis.set_ylabel("score")
    axis.legend()
    figure.autofmt_xdate()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(figure)
    return path
