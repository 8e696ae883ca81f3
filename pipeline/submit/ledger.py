"""The submission ledger: every submission made from here, merged with Kaggle's scores."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Callable
from pathlib import Path

import filelock
import pandas as pd

from pipeline.atomic import write_atomically

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
    "sha256",  # of the uploaded file's bytes: the same content is not submitted twice
]


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_ledger(path: Path) -> pd.DataFrame:
    """The ledger, or an empty one with the right columns."""
    if not path.is_file():
        return pd.DataFrame(columns=COLUMNS, dtype=str)
    ledger = pd.read_csv(path, dtype=str, keep_default_na=False)  # text throughout: scores may be blank
    return ledger.reindex(columns=[*COLUMNS, *(c for c in ledger.columns if c not in COLUMNS)], fill_value="")


UPLOADING = "uploading"  # recorded before the upload starts; replaced by its outcome


def submission_tag(digest: str) -> str:
    """What the submission's description on Kaggle carries, so that an upload whose answer was
    lost (the process killed) can be found there."""
    return f"[sha256:{digest}]"


def interrupted_upload(ledger: pd.DataFrame, competition: str, digest: str) -> bool:
    """True when an upload of these bytes started and its outcome was never recorded."""
    return bool(
        (
            (ledger["competition"] == competition)
            & (ledger["sha256"] == digest)
            & (ledger["status"] == UPLOADING)
        ).any()
    )


def settle_upload(path: Path, competition: str, digest: str, outcome: dict) -> pd.DataFrame:
    """Replace the status (and the fields in `outcome`) of the uploading rows of these bytes."""

    def change(ledger: pd.DataFrame) -> pd.DataFrame:
        rows = (
            (ledger["competition"] == competition)
            & (ledger["sha256"] == digest)
            & (ledger["status"] == UPLOADING)
        )
        for column, value in outcome.items():
            ledger.loc[rows, column] = str(value)
        return ledger

    return update_ledger(path, change)


def already_submitted(ledger: pd.DataFrame, competition: str, digest: str) -> pd.Series | None:
    """The ledger row of an earlier upload (Kaggle gave it a reference, it did not fail) of the
    same bytes to `competition`, or None."""
    same = ledger[
        (ledger["competition"] == competition)
        & (ledger["sha256"] == digest)
        & (ledger["ref"] != "")
        & ~ledger["status"].str.lower().str.contains("error|fail")
    ]
    return None if same.empty else same.iloc[-1]


def update_ledger(path: Path, change: Callable[[pd.DataFrame], pd.DataFrame]) -> pd.DataFrame:
    """Read, change and save the ledger as one step: commands running at once wait for each other
    (a lock file beside it), and the file is written whole, then renamed. Returns the new ledger."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with filelock.FileLock(str(path) + ".lock"):
        ledger = change(read_ledger(path))
        write_atomically(path, lambda partial: ledger.to_csv(partial, index=False))
    return ledger


def append_row(ledger: pd.DataFrame, row: dict) -> pd.DataFrame:
    """`ledger` with one row added (its time now unless given)."""
    entry = {column: str(row.get(column, "")) for column in COLUMNS}
    entry["time"] = entry["time"] or dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return pd.concat([ledger, pd.DataFrame([entry], dtype=str)], ignore_index=True)


def record(path: Path, row: dict) -> pd.DataFrame:
    """Append one submission attempt (failed ones too) and save; returns the ledger."""
    return update_ledger(path, lambda ledger: append_row(ledger, row))


def merge_remote(ledger: pd.DataFrame, remote: list[dict], competition: str) -> pd.DataFrame:
    """This competition's rows brought up to date with Kaggle's list of submissions: status and
    scores by reference; an interrupted upload found by the hash in its description gets its
    reference; submissions the ledger never saw (made elsewhere, or whose answer was lost) are added."""
    by_ref = {str(s["ref"]): s for s in remote}
    merged = ledger.copy()
    for i, row in merged.iterrows():
        if row["competition"] != competition:
            continue
        if row["status"] == UPLOADING and row["sha256"]:
            tag = submission_tag(row["sha256"])
            found = next((s for s in remote if tag in str(s.get("description") or "")), None)
            if found is not None:
                merged.at[i, "ref"] = str(found["ref"])
        found = by_ref.get(str(merged.at[i, "ref"]).removesuffix(".0"))
        if found is None:
            continue
        merged.at[i, "status"] = str(found["status"])
        merged.at[i, "public_score"] = "" if found["public_score"] is None else str(found["public_score"])
        merged.at[i, "private_score"] = "" if found["private_score"] is None else str(found["private_score"])
        if found.get("error"):
            merged.at[i, "note"] = str(found["error"])
    known = {str(r).removesuffix(".0") for r in merged["ref"]}
    unknown = [s for s in reversed(remote) if str(s["ref"]) not in known]  # oldest first
    added = [_remote_row(s, competition) for s in unknown]
    return pd.concat([merged, pd.DataFrame(added, dtype=str)], ignore_index=True) if added else merged


def _remote_row(submission: dict, competition: str) -> dict[str, str]:
    description = str(submission.get("description") or "")
    digest = re.search(r"\[sha256:([0-9a-f]{64})\]", description)
    row = {
        "time": str(submission.get("date") or ""),
        "competition": competition,
        "file": str(submission.get("file") or ""),
        "status": str(submission["status"]),
        "ref": str(submission["ref"]),
        "public_score": "" if submission.get("public_score") is None else str(submission["public_score"]),
        "private_score": "" if submission.get("private_score") is None else str(submission["private_score"]),
        "note": description[:200],
        "sha256": digest.group(1) if digest else "",
    }
    return {column: row.get(column, "") for column in COLUMNS}


def scored(ledger: pd.DataFrame, competition: str) -> pd.DataFrame:
    """The submissions to `competition` with both a CV and a public score, as numbers."""
    rows = ledger[ledger["competition"] == competition].copy()
    for column in ("cv_score", "public_score"):
        rows[column] = pd.to_numeric(rows[column], errors="coerce")
    return rows.dropna(subset=["cv_score", "public_score"])


def readable(ledger: pd.DataFrame) -> pd.DataFrame:
    """The ledger with scores shown to 5 significant digits."""
    shown = ledger.copy()
    for column in ("cv_score", "public_score", "private_score"):
        numbers = pd.to_numeric(shown[column], errors="coerce")
        shown[column] = [f"{v:.5g}" if pd.notna(v) else "" for v in numbers]
    return shown
