"""Submission files and the ledger: format checks a user relies on before anything is uploaded."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.competitions import get_competition
from pipeline.submit.ledger import COLUMNS, merge_remote, read_ledger, record
from pipeline.submit.submission_file import (
    SubmissionError,
    build_submission,
    read_submission,
    validate_submission,
)

SAMPLE = pd.DataFrame({"id": [1, 2, 3], "label": [0.5, 0.5, 0.5]})


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        (pd.DataFrame({"id": [1, 2], "label": [0.1, 0.2]}), "missing"),
        (pd.DataFrame({"id": [1, 2, 2, 3], "label": [0.1, 0.2, 0.2, 0.3]}), "more than once"),
        (pd.DataFrame({"id": [1, 2, 3], "label": [0.1, np.nan, 0.3]}), "empty or not numbers"),
        (pd.DataFrame({"id": [1, 2, 3], "label": [0.1, 1.5, 0.3]}), "outside"),
        (pd.DataFrame({"ID": [1, 2, 3], "label": [0.1, 0.2, 0.3]}), "header"),
        (pd.DataFrame({"id": [1, 2, 4], "label": [0.1, 0.2, 0.3]}), "missing"),
        (pd.DataFrame({"id": [1, 2, 3], "label": [True, False, True]}), "true/false"),
    ],
)
def test_broken_submissions_are_refused(broken: pd.DataFrame, message: str) -> None:
    with pytest.raises(SubmissionError, match=message):
        validate_submission(broken, SAMPLE, get_competition("dogs-vs-cats-redux-kernels-edition"))


@pytest.mark.parametrize("slug", ["dogs-vs-cats-redux-kernels-edition", "dogs-vs-cats"])
def test_a_label_column_of_true_and_false_is_refused_for_both_formats(tmp_path, slug: str) -> None:
    path = tmp_path / "submission.csv"
    path.write_text("id,label\n1,True\n2,False\n3,True\n")
    with pytest.raises(SubmissionError, match="true/false"):
        validate_submission(read_submission(path), SAMPLE, get_competition(slug))


def test_hard_labels_for_accuracy_competitions() -> None:
    competition = get_competition("dogs-vs-cats")
    predictions = pd.DataFrame({"id": ["1", "2"], "probability": [0.9, 0.1], "label": [1, 0]})
    table, missing = build_submission(competition, predictions, SAMPLE.assign(label=0), train_prior=0.6)
    assert table["label"].tolist() == [1, 0, 1] and missing == ["3"]  # an unreadable image gets the majority
    validate_submission(table, SAMPLE, competition)
    with pytest.raises(SubmissionError, match="whole class numbers"):
        validate_submission(table.assign(label=[0.9, 0.1, 0.6]), SAMPLE, competition)


def test_probabilities_follow_the_sample_order_and_missing_ids_get_the_prior() -> None:
    competition = get_competition("dogs-vs-cats-redux-kernels-edition")
    predictions = pd.DataFrame({"id": ["3", "1"], "probability": [0.8, 0.2]})
    table, missing = build_submission(competition, predictions, SAMPLE, train_prior=0.4)
    assert table["id"].tolist() == [1, 2, 3] and table["label"].tolist() == [0.2, 0.4, 0.8]
    assert missing == ["2"]


def test_leaderboard_scores_merge_into_the_ledger_by_reference(tmp_path) -> None:
    path = tmp_path / "ledger.csv"
    record(path, {"competition": "c", "file": "a.csv", "status": "submitted", "ref": "11"})
    record(path, {"competition": "c", "file": "b.csv", "status": "submitted", "ref": "12"})
    record(path, {"competition": "other", "file": "c.csv", "status": "submitted", "ref": "11"})
    remote = [
        {"ref": 11, "status": "complete", "public_score": 0.25, "private_score": 0.3, "error": None},
        {"ref": 12, "status": "error", "public_score": None, "private_score": None, "error": "bad rows"},
    ]
    merged = merge_remote(read_ledger(path), remote, "c")
    assert list(merged.columns) == COLUMNS
    assert merged["status"].tolist() == ["complete", "error", "submitted"]  # another competition untouched
    assert merged["public_score"].tolist() == ["0.25", "", ""]
    assert merged.loc[1, "note"] == "bad rows"
