"""The edges of the submission flow: write the CSV, upload it, track it on the leaderboard."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from pipeline.competitions import Competition
from pipeline.config import Config
from pipeline.kaggle_api import KaggleError, KaggleGateway
from pipeline.kfold import ensemble_dir
from pipeline.ledger import merge_remote, plot_cv_against_public, read_ledger, record
from pipeline.submission import (
    SubmissionError,
    build_submission,
    prior,
    validate_submission,
    write_submission,
)
from pipeline.train import default_run_name


def ledger_path(config: Config) -> Path:
    """submissions/ledger.csv."""
    return Path(config.paths.submissions_root) / "ledger.csv"


def cv_score(config: Config, competition: Competition) -> float | None:
    """The ensemble's out-of-fold score in the competition's metric, if predict has run."""
    path = ensemble_dir(config) / "ensemble.json"
    if not path.is_file():
        return None
    report = json.loads(path.read_text())
    if competition.metric == "log_loss":
        return report.get("oof_with_tta_and_clip", report["oof_with_tta"])["log_loss"]
    return report.get("oof_accuracy_at_threshold", report["oof_with_tta"]["accuracy"])


def write_ensemble_submission(
    config: Config,
    competition: Competition,
    predictions: pd.DataFrame,
    sample: pd.DataFrame,
    train_labels: pd.Series,
) -> Path:
    """Build, validate and save the submission CSV of the ensemble's test predictions."""
    table, missing = build_submission(competition, predictions, sample, prior(train_labels.to_numpy()))
    if missing:
        print(
            f"warning: {len(missing)} test image(s) could not be read; they get the class prior: {missing[:10]}"
        )
    validate_submission(table, sample, competition)
    path = write_submission(table, Path(config.paths.submissions_root), competition, default_run_name(config))
    print(f"Submission written: {path} ({len(table):,} rows, validated against the sample submission)")
    return path


def latest_submission(config: Config, competition: Competition) -> Path:
    """The newest submission file of this run."""
    pattern = f"{competition.slug}-{default_run_name(config)}-*.csv"
    found = sorted(Path(config.paths.submissions_root).glob(pattern))
    if not found:
        raise FileNotFoundError(
            f"no {pattern} in {config.paths.submissions_root}: run `make predict` first, or pass --file."
        )
    return found[-1]


def submit_file(
    config: Config, competition: Competition, path: Path, sample: pd.DataFrame, gateway: KaggleGateway
) -> int:
    """Validate `path`, upload it, and record the attempt in the ledger whatever happens."""
    score = cv_score(config, competition)
    run = default_run_name(config)
    row = {
        "competition": competition.slug,
        "file": path.name,
        "run": run,
        "cv_score": "" if score is None else score,
    }
    try:
        validate_submission(pd.read_csv(path), sample, competition)
    except SubmissionError as error:
        record(ledger_path(config), {**row, "status": "invalid", "note": str(error)})
        raise SubmissionError(f"{path} was not uploaded: {error}") from error
    cv_text = "no CV" if score is None else f"CV {competition.metric} {score:.5f}"
    message = f"{run}: {cv_text}"
    try:
        ref = gateway.submit(competition.slug, path, message)
    except KaggleError as error:
        record(ledger_path(config), {**row, "status": "failed", "note": str(error)[:300]})
        raise
    record(ledger_path(config), {**row, "status": "submitted", "ref": ref, "note": message})
    print(f"Submitted {path.name} to {competition.slug} (reference {ref}): {message}")
    return ref


def show_leaderboard(config: Config, competition: Competition, gateway: KaggleGateway) -> pd.DataFrame:
    """Fetch scores, merge them into the ledger, print it, plot CV against public score, show the rank."""
    remote = gateway.submissions(competition.slug)
    ledger = merge_remote(read_ledger(ledger_path(config)), remote, competition.slug)
    ledger.to_csv(ledger_path(config), index=False)
    mine = ledger[ledger["competition"] == competition.slug]
    columns = ["time", "run", "cv_score", "public_score", "private_score", "status", "file"]
    print(f"Submissions to {competition.slug} ({ledger_path(config)}):")
    print(mine[columns].to_string(index=False) if len(mine) else "  none yet")
    plot = plot_cv_against_public(
        ledger, competition.slug, Path(config.paths.submissions_root) / f"{competition.slug}-scores.png"
    )
    if plot:
        print(f"CV against public score: {plot}")
    teams = {s["team"] for s in remote if s.get("team")}
    board = gateway.leaderboard(competition.slug)
    for rank, entry in enumerate(board, start=1):
        if entry["team"] in teams:
            print(f"Public leaderboard: rank {rank} of {len(board)} (score {entry['score']})")
            break
    return mine
