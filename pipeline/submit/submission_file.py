"""Submission files: built in the competition's format and validated against its sample submission."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.competitions import Competition
from pipeline.tables import TableError, read_text_csv

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
        return read_text_csv(path)
    except TableError as error:
        raise SubmissionError(f"the file is not a CSV table ({str(error)[:NOTE_CHARS]})") from error


def _short(values: object) -> str:
    text = repr(values)
    return text if len(text) <= 120 else text[:117] + "..."


def build_submission(
    competition: Competition,
    predictions: pd.DataFrame,
    sample: pd.DataFrame,
    train_prior: float | np.ndarray,
) -> tuple[pd.DataFrame, list[str]]:
    """Rows in the sample submission's order and columns; ids without a prediction get the prior
    (P(positive), or every class's share for many classes; its most frequent class for hard labels).

    `predictions` has id, label (class index) and probability (two classes) or p0, p1, ... (one per
    class, in the order of `competition.classes`). Returns the table and the ids that had no
    prediction (test images that could not be read).
    """
    id_col, kind = competition.id_column, competition.submission_kind
    by_id = predictions.set_index(predictions["id"].astype(str))
    ids = sample[id_col]
    unknown = sorted(set(by_id.index) - {str(i) for i in ids})
    if unknown:
        print(
            f"warning: {len(unknown)} predicted test id(s) are not in the sample submission and are left "
            f"out: {unknown[:10]}"
        )
    keys = ids.astype(str)
    missing = [i for i in keys if i not in by_id.index]
    if unknown and missing:
        raise SubmissionError(
            f"{len(missing)} id(s) of the sample submission have no prediction (e.g. {missing[:3]}) while "
            f"{len(unknown)} predicted id(s) are not in it (e.g. {unknown[:3]}): the test images' ids do "
            "not match the sample's; check test_pattern and id_column in the competition's table"
        )
    known = keys.isin(by_id.index).to_numpy()
    prior_vector = np.atleast_1d(np.asarray(train_prior, dtype=np.float64))
    prior_class = int(prior_vector[0] >= 0.5) if len(prior_vector) == 1 else int(prior_vector.argmax())
    table = pd.DataFrame({id_col: ids.to_numpy()})
    if kind == "class_probabilities":
        if "probability" in by_id.columns:  # two classes: P(positive) and its complement
            by_id = by_id.assign(p0=1 - by_id["probability"], p1=by_id["probability"])
        if len(prior_vector) == 1:
            prior_vector = np.array([1 - prior_vector[0], prior_vector[0]])
        for column in sample.columns.drop(id_col):
            k = competition.classes.index(column)
            values = np.full(len(ids), prior_vector[k])
            values[known] = by_id.loc[keys[known], f"p{k}"].to_numpy(dtype=np.float64)
            table[column] = values
        return table, missing
    if kind == "probability":
        values = np.full(len(ids), float(prior_vector[0]))
        values[known] = by_id.loc[keys[known], "probability"].to_numpy(dtype=np.float64)
        table[competition.label_column] = values
        return table, missing
    indices = np.full(len(ids), prior_class, dtype=np.int64)
    indices[known] = by_id.loc[keys[known], "label"].to_numpy(dtype=np.int64)
    if kind == "class_name":
        table[competition.label_column] = np.asarray(competition.classes, dtype=object)[indices]
    else:
        table[competition.label_column] = indices
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
    if competition.submission_kind == "class_probabilities":
        _check_class_probabilities(table.drop(columns=id_col), table[id_col].astype(str))
        return
    if competition.submission_kind == "class_name":
        names = table[label_col].astype(str)
        if competition.classes:
            wrong = sorted(set(names) - set(competition.classes))
            if wrong:
                raise SubmissionError(
                    f"{label_col} has {len(wrong)} name(s) that are no class, e.g. {wrong[:5]}; allowed are "
                    f"{list(competition.classes)[:12]}"
                )
        return
    _refuse_booleans(table[[label_col]])
    values = _numbers(table[label_col])
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
        whole = table[label_col].astype(str).str.fullmatch(r"\s*\d+\s*")
        if not whole.all():
            raise SubmissionError(
                f"{label_col} must be whole class numbers, got {_short(table.loc[~whole, label_col].head(3).tolist())}"
            )
        allowed = set(range(max(len(competition.classes), 2)))
        wrong = sorted(set(values.astype(int)) - allowed)
        if wrong:
            raise SubmissionError(f"{label_col} has values {wrong[:5]}; allowed are {sorted(allowed)[:12]}")


SUM_TOLERANCE = 1e-3  # per row, for probabilities written as text with 6+ digits


def _numbers(column: pd.Series) -> pd.Series:
    """The column's cells as numbers; NaN for text that is no number (empty, `True`, `NA`, `nan`)."""
    if pd.api.types.is_bool_dtype(column):
        return pd.Series(np.nan, index=column.index)
    text = column.astype(str).str.strip()
    numbers = pd.to_numeric(text, errors="coerce")
    return numbers.where(~text.str.lower().isin({"nan", "inf", "-inf", "+inf", "infinity", "-infinity"}))


def _refuse_booleans(values: pd.DataFrame) -> None:
    """True/False (as Python writes booleans) are no probabilities and no class numbers."""
    for column in values.columns:
        cells = values[column]
        if (
            pd.api.types.is_bool_dtype(cells)
            or cells.astype(str).str.strip().str.lower().isin({"true", "false"}).any()
        ):
            raise SubmissionError(
                f"{column} holds true/false, not numbers: write probabilities or class numbers"
            )


def _check_class_probabilities(values: pd.DataFrame, ids: pd.Series) -> None:
    """Every cell a number in [0, 1], every row summing to 1."""
    _refuse_booleans(values)
    numbers = values.apply(_numbers)
    empty = numbers.isna().any(axis=1)
    if empty.any():
        raise SubmissionError(
            f"{int(empty.sum())} row(s) have empty or non-numeric probabilities (ids {ids[empty].tolist()[:5]})"
        )
    outside = ((numbers < 0) | (numbers > 1)).any(axis=1)
    if outside.any():
        raise SubmissionError(
            f"{int(outside.sum())} row(s) have probabilities outside [0, 1] (ids {ids[outside].tolist()[:5]})"
        )
    sums = numbers.sum(axis=1)
    off = (sums - 1).abs() > SUM_TOLERANCE
    if off.any():
        raise SubmissionError(
            f"{int(off.sum())} row(s) do not sum to 1 (ids {ids[off].tolist()[:5]}, sums "
            f"{[round(v, 4) for v in sums[off].head(3)]}); each row is one probability per class"
        )


def prior(labels: np.ndarray, num_classes: int = 2) -> float | np.ndarray:
    """The share of the positive class among training labels; with more classes, every class's share."""
    labels = np.asarray(labels, dtype=np.int64)
    if num_classes == 2:
        return float(np.mean(labels)) if len(labels) else 0.5
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    return counts / counts.sum() if counts.sum() else np.full(num_classes, 1 / num_classes)
