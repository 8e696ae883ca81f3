"""Submission files: built in the competition's format and validated against its sample submission."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.competitions import Competition

MAX_FILE_BYTES = 100 * 2**20  # a submission for an image competition is a few MB at most
NOTE_CHARS = 300  # messages quote at most this much of a bad file


class SubmissionError(ValueError):
    """A submission file is not in the competition's format; the message says what is wrong."""


def read_submission(path: Path) -> pd.DataFrame:
    """The submission CSV at `path`, or a short SubmissionError for files that are no CSV table."""
    size = path.stat().st_size
    if size == 0:
        raise SubmissionError("the file is empty")
    if size > MAX_FILE_BYTES:
        raise SubmissionError(f"the file has {size:,} bytes, more than {MAX_FILE_BYTES:,}: not a submission")
    with path.open("rb") as opened:
        head = opened.read(1 << 16)
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as error:
        if error.start < len(head) - 4:  # not a multi-byte character cut at the end of the sample
            raise SubmissionError("the file is not UTF-8 text (binary data?)") from error
    if b"\0" in head:
        raise SubmissionError("the file is not text (it holds NUL bytes)")
    try:
        return pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise SubmissionError(f"the file is not a CSV table ({str(error)[:NOTE_CHARS]})") from error


def _short(values: object) -> str:
    text = repr(values)
    return text if len(text) <= 120 else text[:117] + "..."


def build_submission(
    competition: Competition, predictions: pd.DataFrame, sample: pd.DataFrame, train_prior: float
) -> tuple[pd.DataFrame, list[str]]:
    """Rows in the sample submission's order and dtypes; ids without a prediction get the prior.

    Returns the table and the ids that had no prediction (test images that could not be read).
    """
    id_col, label_col = competition.id_column, competition.label_column
    value_col = "probability" if competition.submission_kind == "probability" else "label"
    by_id = dict(zip(predictions["id"].astype(str), predictions[value_col], strict=True))
    fallback = train_prior if competition.submission_kind == "probability" else int(train_prior >= 0.5)
    ids = sample[id_col]
    unknown = sorted(set(by_id) - {str(i) for i in ids})
    if unknown:
        print(
            f"warning: {len(unknown)} predicted test id(s) are not in the sample submission and are left "
            f"out: {unknown[:10]}"
        )
    missing = [str(i) for i in ids if str(i) not in by_id]
    values = [by_id.get(str(i), fallback) for i in ids]
    table = pd.DataFrame({id_col: ids.to_numpy(), label_col: values})
    if competition.submission_kind == "label":
        table[label_col] = table[label_col].astype(int)
    else:
        table[label_col] = table[label_col].astype(float)
    return table, missing


def validate_submission(table: pd.DataFrame, sample: pd.DataFrame, competition: Competition) -> None:
    """Raise SubmissionError unless `table` has the sample's header, every id once, and valid values."""
    if list(table.columns) != list(sample.columns):
        raise SubmissionError(
            f"header is {_short(list(table.columns))}, the competition expects {list(sample.columns)}"
        )
    id_col, label_col = competition.id_column, competition.label_column
    ids = table[id_col].astype(str)
    duplicated = sorted(set(ids[ids.duplicated()]))
    if duplicated:
        raise SubmissionError(f"{len(duplicated)} id(s) appear more than once, e.g. {duplicated[:5]}")
    expected = set(sample[id_col].astype(str))
    missing, extra = sorted(expected - set(ids)), sorted(set(ids) - expected)
    if missing:
        raise SubmissionError(f"{len(missing)} id(s) of the test set are missing, e.g. {missing[:5]}")
    if extra:
        raise SubmissionError(f"{len(extra)} id(s) are not in the test set, e.g. {extra[:5]}")
    if pd.api.types.is_bool_dtype(table[label_col]):
        raise SubmissionError(
            f"{label_col} holds true/false, not numbers: write probabilities or class numbers"
        )
    values = pd.to_numeric(table[label_col], errors="coerce")
    if values.isna().any():
        bad = table.loc[values.isna(), id_col].astype(str).tolist()[:5]
        raise SubmissionError(
            f"{int(values.isna().sum())} {label_col} value(s) are empty or not numbers (ids {bad})"
        )
    if competition.submission_kind == "probability":
        outside = values[(values < 0) | (values > 1)]
        if len(outside):
            raise SubmissionError(
                f"{len(outside)} probabilities are outside [0, 1], e.g. {outside.head(3).tolist()}"
            )
    else:
        if not pd.api.types.is_integer_dtype(table[label_col]):
            raise SubmissionError(
                f"{label_col} must be whole class numbers, got dtype {table[label_col].dtype}"
            )
        allowed = set(range(len(competition.classes)))
        wrong = sorted(set(values.astype(int)) - allowed)
        if wrong:
            raise SubmissionError(f"{label_col} has values {wrong[:5]}; allowed are {sorted(allowed)}")


def prior(labels: np.ndarray) -> float:
    """The share of the positive class among training labels."""
    return float(np.mean(labels)) if len(labels) else 0.5
