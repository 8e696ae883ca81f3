"""The edges of the submission flow: write the CSV, upload it, track it on the leaderboard."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from pipeline import layout
from pipeline.atomic import write_atomically
from pipeline.competitions import Competition
from pipeline.config import Config
from pipeline.kaggle_api import KaggleError, KaggleGateway
from pipeline.run import Run
from pipeline.submit.ledger import (
    UPLOADING,
    already_submitted,
    append_row,
    file_digest,
    interrupted_upload,
    merge_remote,
    read_ledger,
    readable,
    record,
    settle_upload,
    submission_tag,
    update_ledger,
)
from pipeline.submit.submission_file import (
    NOTE_CHARS,
    SubmissionError,
    build_submission,
    prior,
    read_submission,
    validate_submission,
)


def write_run_submission(
    config: Config,
    competition: Competition,
    run: str,
    predictions: pd.DataFrame,
    sample: pd.DataFrame,
    train_labels: pd.Series,
) -> Path:
    """Build, validate and save the submission CSV of a run's test predictions."""
    table, missing = build_submission(
        competition, predictions, sample, prior(train_labels.to_numpy(), competition.num_classes)
    )
    if missing:
        print(
            f"warning: {len(missing)} test image(s) could not be read; they get the class prior: {missing[:10]}"
        )
    validate_submission(table, sample, competition)
    path = layout.new_submission_path(config, run)
    write_atomically(path, lambda p: table.to_csv(p, index=False, float_format="%.6f"))
    print(f"Submission written: {path} ({len(table):,} rows, validated against the sample submission)")
    return path


def latest_submission_or_explain(config: Config) -> Path:
    """The competition's newest submission file (of `predict.run` if set), or a FileNotFoundError
    saying what to run; says which file it took."""
    found = layout.latest_submission(config)
    if found is None:
        of = f"of run {config.predict.run} " if config.predict.run else ""
        raise FileNotFoundError(
            f"no submission {of}of {config.competition} in {layout.submissions_dir(config)}: run `make predict` "
            "first, or pass --file."
        )
    print(f"Submitting {found.name}, the newest submission of {config.competition} (--file for another).")
    return found


def submit_file(
    config: Config,
    competition: Competition,
    path: Path,
    sample: pd.DataFrame,
    gateway: KaggleGateway,
    run: Run | None = None,
    force: bool = False,
) -> int | None:
    """Validate `path`, upload it, and record the attempt in the ledger whatever happens; return
    Kaggle's reference, or None when the same bytes were already submitted (unless `force`).

    The run (and so the CV score) is `run`, or read from the file name `predict` gave it.
    """
    name = layout.submission_run(path, competition.slug) or ""
    if run is None and name:
        run = Run(layout.competition_runs(config) / name)
    if run is not None:
        try:
            name = str(run.path.relative_to(layout.competition_runs(config)))
        except ValueError:
            name = run.name
    digest = file_digest(path)
    ledger_path = layout.ledger_path(config)
    ledger = read_ledger(ledger_path)
    earlier = already_submitted(ledger, competition.slug, digest)
    if earlier is not None and not force:
        print(
            f"{path.name} was already submitted to {competition.slug} on {earlier['time']} "
            f"(reference {earlier['ref']}); not uploading it again (--force to resubmit)."
        )
        return None
    if interrupted_upload(ledger, competition.slug, digest) and not force:
        found = _find_on_kaggle(gateway, competition.slug, digest)
        if found is not None:  # the server took it; the process that sent it never heard back
            settle_upload(
                ledger_path, competition.slug, digest, {"status": found["status"], "ref": found["ref"]}
            )
            print(
                f"{path.name} reached Kaggle in an upload that was interrupted (reference {found['ref']}): "
                "recorded in the ledger, not uploaded again."
            )
            return None
        settle_upload(
            ledger_path, competition.slug, digest, {"status": "interrupted", "note": "never reached Kaggle"}
        )
    score = run.cv_score(competition.metric) if run is not None else None
    row = {
        "competition": competition.slug,
        "file": path.name,
        "run": name,
        "cv_score": "" if score is None else f"{score:.5g}",
        "sha256": digest,
    }
    try:
        validate_submission(read_submission(path), sample, competition)
    except SubmissionError as error:
        record(ledger_path, {**row, "status": "invalid", "note": str(error)[:NOTE_CHARS]})
        raise SubmissionError(f"{path} was not uploaded: {error}") from error
    cv_text = "no CV" if score is None else f"CV {competition.metric} {score:.5f}"
    members = run.portfolio_line() if run is not None else ""
    message = f"{name or path.name}: {cv_text}" + (f" ({members})" if members else "")
    record(ledger_path, {**row, "status": UPLOADING, "note": message})  # before the request: a kill is seen
    try:
        ref = gateway.submit(competition.slug, path, f"{message} {submission_tag(digest)}")
    except KaggleError as error:
        settle_upload(
            ledger_path, competition.slug, digest, {"status": "failed", "note": str(error)[:NOTE_CHARS]}
        )
        raise
    settle_upload(ledger_path, competition.slug, digest, {"status": "submitted", "ref": ref})
    print(f"Submitted {path.name} to {competition.slug} (reference {ref}): {message}")
    return ref


def record_kernel_submission(
    config: Config, competition: Competition, submission: Path, outputs: Path, run: Run | None
) -> float | None:
    """Record a kernel's fetched submission (and its run's CV) in the ledger; return the CV score."""
    score = run.cv_score(competition.metric) if run is not None else None
    row = {
        "competition": competition.slug,
        "file": str(submission),
        "run": outputs.name,
        "cv_score": "" if score is None else f"{score:.5g}",
        "status": "fetched",
        "sha256": file_digest(submission),
    }

    def add_once(ledger: pd.DataFrame) -> pd.DataFrame:  # fetching the same version again adds nothing
        same = ["competition", "run", "status", "sha256"]
        if (ledger[same] == pd.Series({k: row[k] for k in same})).all(axis=1).any():
            return ledger
        return append_row(ledger, row)

    update_ledger(layout.ledger_path(config), add_once)
    return score


def _find_on_kaggle(gateway: KaggleGateway, competition: str, digest: str) -> dict | None:
    """Kaggle's record of a submission of these bytes made from here (its description's tag)."""
    tag = submission_tag(digest)
    return next((s for s in gateway.submissions(competition) if tag in str(s.get("description") or "")), None)


def show_leaderboard(config: Config, competition: Competition, gateway: KaggleGateway) -> pd.DataFrame:
    """Fetch scores, merge them into the ledger, print it, show the rank; return this competition's rows."""
    remote = gateway.submissions(competition.slug)
    ledger = update_ledger(
        layout.ledger_path(config), lambda rows: merge_remote(rows, remote, competition.slug)
    )
    mine = ledger[ledger["competition"] == competition.slug]
    columns = ["time", "run", "cv_score", "public_score", "private_score", "status", "file"]
    print(f"Submissions to {competition.slug} ({layout.ledger_path(config)}):")
    print(readable(mine)[columns].to_string(index=False) if len(mine) else "  none yet")
    teams = {s["team"] for s in remote if s.get("team")}
    board = gateway.leaderboard(competition.slug)
    for rank, entry in enumerate(board, start=1):
        if entry["team"] in teams:
            print(f"Public leaderboard: rank {rank} of {len(board)} (score {entry['score']})")
            break
    return mine
