"""Report figures drawn from tables: the CV-against-public plot of the ledger."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from pipeline.report.plots import cv_against_public, submission_labels


def test_each_submission_of_one_run_gets_its_own_label_and_the_plot_is_written(tmp_path: Path) -> None:
    rows = pd.DataFrame(
        {
            "time": ["2026-12-03T10:05:00Z", "2026-12-01T09:00:00Z", "2026-12-03T11:30:00Z"],
            "run": ["mobilenet-0.25-160px"] * 3,
            "cv_score": [0.15, 0.18, 0.12],
            "public_score": [0.16, 0.19, 0.13],
        }
    )
    labels = submission_labels(rows)
    assert len(set(labels)) == 3 and labels[0] == "12-03 10:05 mobilenet-0.25-160px"
    picture = cv_against_public(rows, "log_loss", tmp_path / "scores.png")
    assert picture.is_file() and picture.stat().st_size > 1000
