"""`make demo`: the whole flow offline through the real Kaggle client and the sandbox."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from pipeline.cli import main


def test_demo_runs_offline_end_to_end(kaggle_env: Path, tmp_path: Path, capsys) -> None:
    roots = ["--data-root", str(tmp_path / "data"), "--runs-root", str(tmp_path / "runs")]
    args = ["demo", *roots, "--submissions-root", str(tmp_path / "submissions")]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "train      cat: 300" in out and "train      dog: 300" in out and "rejected: 3 file(s)" in out
    rejects = pd.read_csv(tmp_path / "data" / "dogs-vs-cats-demo" / "index" / "rejects.csv")
    assert len(rejects) == 3 and rejects["reason"].str.len().gt(0).all()
    assert (tmp_path / "runs" / "dogs-vs-cats-demo" / "preview" / "batch.png").stat().st_size > 0
    assert (tmp_path / "runs" / "dogs-vs-cats-demo" / "preview" / "config.json").is_file()
    assert (tmp_path / "runs" / "dogs-vs-cats-demo" / "small-cnn-64px" / "cv.csv").is_file()
    ledger = pd.read_csv(tmp_path / "submissions" / "ledger.csv")
    assert ledger["status"].tolist() == ["complete"]
    assert ledger["run"].tolist() == ["small-cnn-64px"] and ledger["cv_score"].iloc[0] < 0.3
    assert ledger["public_score"].iloc[0] < 0.3  # the sandbox scored it against the hidden solution
    assert "Public leaderboard: rank 1 of 2" in out
    assert "phase head epoch 1/8:" in out and "━" not in out  # one line per epoch in a log, no per-step bars
    report = tmp_path / "runs" / "dogs-vs-cats-demo" / "small-cnn-64px" / "report.html"
    assert out.rstrip().endswith(f"Report: {report}") and report.stat().st_size > 10_000
    kept = [
        tmp_path / "data" / "dogs-vs-cats-demo" / "dogs-vs-cats-demo.zip",
        *(tmp_path / "runs" / "dogs-vs-cats-demo" / "small-cnn-64px").glob("fold-*/metrics.json"),
    ]
    before = [path.stat().st_mtime_ns for path in kept]
    assert main(args) == 0  # a second run reuses the download and the trained folds
    assert [path.stat().st_mtime_ns for path in kept] == before and len(kept) == 3
    assert len(pd.read_csv(tmp_path / "submissions" / "ledger.csv")) == 1  # the same file is not sent twice
    assert len(out.splitlines()) <= 60  # quiet by default: no configuration dump, one line per epoch


def test_the_digits_demo_runs_many_classes_offline_end_to_end(
    kaggle_env: Path, tmp_path: Path, capsys
) -> None:
    """scikit-learn's real handwritten digits (10 classes, labels in a CSV, classes read from it)
    through the same CLI flow; fewer folds and epochs than `make demo DEMO=digits` to stay quick."""
    roots = ["--data-root", str(tmp_path / "data"), "--runs-root", str(tmp_path / "runs")]
    args = ["demo", "--config", "digits", *roots, "--submissions-root", str(tmp_path / "submissions")]
    assert main([*args, "--folds", "2", "--epochs-head", "6"]) == 0
    out = capsys.readouterr().out
    index = json.loads((tmp_path / "data" / "digits-demo" / "index" / "index.json").read_text())
    assert index["classes"] == [str(d) for d in range(10)] and index["train.csv"]["rows"] == 1438
    assert "Post-processing: " in out and "temperature=" in out
    runs = tmp_path / "runs" / "digits-demo" / "small-cnn-32px"
    cv = pd.read_csv(runs / "cv.csv").set_index("fold")
    assert cv.loc["all", "accuracy"] >= 0.9 and {"f1_macro", "qwk", "roc_auc"} <= set(cv.columns)
    submission = pd.read_csv(next((tmp_path / "submissions").glob("digits-demo-*.csv")))
    assert list(submission.columns) == ["id", "label"] and set(submission["label"]) <= set(range(10))
    ledger = pd.read_csv(tmp_path / "submissions" / "ledger.csv")
    assert ledger["status"].tolist() == ["complete"] and ledger["public_score"].iloc[0] >= 0.9
    report = (runs / "report.html").read_text()
    assert "The most frequent confusions" in report and "Per class" in report
