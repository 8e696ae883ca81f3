"""The state carried between kernel versions: packing, finding, restoring, and what comes next."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from pipeline.config import Config, load_config
from pipeline.kernel.session import check_budget, state_dataset
from pipeline.kernel.state import (
    ARCHIVE,
    Progress,
    ResumeError,
    fail_running_trials,
    find_state,
    journal_trials,
    pack_state,
    repair_journal,
    restore_state,
)


def study_journal(path: Path, finished: int, running: int = 0) -> Path:
    """A journal with `finished` complete trials (1 s each) and `running` trials left running."""
    path.parent.mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(storage=JournalStorage(JournalFileBackend(str(path))), study_name="recipe")
    for _ in range(finished):
        trial = study.ask()
        study.tell(trial, trial.suggest_float("x", 0, 1))
    for _ in range(running):
        study.ask()
    return path


def test_a_cut_journal_keeps_the_trials_before_the_cut(tmp_path: Path) -> None:
    journal = study_journal(tmp_path / "recipe.journal", finished=3)
    whole = journal.read_bytes()
    journal.write_bytes(whole + b'{"op_code": 5, "trial_')  # a session killed mid-write
    assert repair_journal(journal) == 1
    assert journal.read_bytes() == whole and journal_trials(journal) == 3
    assert repair_journal(journal) == 0


def test_trials_left_running_by_an_ended_session_count_as_failed(tmp_path: Path) -> None:
    journal = study_journal(tmp_path / "tune" / "recipe.journal", finished=2, running=1)
    assert fail_running_trials(tmp_path / "tune") == [2]
    states = [
        t.state
        for t in optuna.load_study(
            study_name="recipe", storage=JournalStorage(JournalFileBackend(str(journal)))
        ).trials
    ]
    assert states.count(optuna.trial.TrialState.FAIL) == 1 and journal_trials(journal) == 2


def test_state_round_trips_as_the_archive_or_as_the_folder_kaggle_unpacks(tmp_path: Path) -> None:
    outputs = tmp_path / "kernel-v1"
    study_journal(outputs / "runs" / "demo" / "tune" / "recipe.journal", finished=2)
    (outputs / "runs" / "demo" / "run" / "fold-0").mkdir(parents=True)
    (outputs / "runs" / "demo" / "run" / "fold-0" / "metrics.json").write_text('{"seconds": 12.0}')
    (outputs / "submission.csv").write_text("id,label\n")  # not state
    manifest = {"kernel": "me/k", "version": 1, "competition": "demo", "backbone": "small-cnn"}
    folder = pack_state(outputs, tmp_path / "state", "me/k-state", manifest)
    metadata = json.loads((folder / "dataset-metadata.json").read_text())
    assert metadata["id"] == "me/k-state" and len(metadata["licenses"]) == 1

    attached = tmp_path / "input" / "k-state"
    attached.mkdir(parents=True)
    (attached / ARCHIVE).write_bytes((folder / ARCHIVE).read_bytes())
    working = tmp_path / "working"
    assert restore_state(find_state(tmp_path / "input"), working) == manifest
    assert journal_trials(working / "runs" / "demo" / "tune" / "recipe.journal") == 2
    assert not (working / "submission.csv").exists()

    unpacked = tmp_path / "input2" / "k-state" / "pipeline-state"
    with zipfile.ZipFile(folder / ARCHIVE) as archive:
        archive.extractall(unpacked)
    assert find_state(tmp_path / "input2") == unpacked
    assert restore_state(unpacked, tmp_path / "working2") == manifest
    assert (tmp_path / "working2" / "runs" / "demo" / "run" / "fold-0" / "metrics.json").is_file()
    assert find_state(tmp_path / "nothing") is None


def test_outputs_without_runs_cannot_be_resumed(tmp_path: Path) -> None:
    (tmp_path / "kernel-v1").mkdir()
    with pytest.raises(ResumeError, match="no runs/ folder"):
        pack_state(tmp_path / "kernel-v1", tmp_path / "state", "me/k-state", {})


def test_the_next_step_names_the_trials_and_folds_left() -> None:
    half = Progress(
        trials=4, trials_wanted=10, folds=2, folds_wanted=5, refits=0, refits_wanted=1, submission=True
    )
    assert half.next_step("tune") == "Next version (`kernel push --resume`): run trials 5-10 of the study."
    assert "train folds 3-5, then train refit models 1-1" in half.next_step("train")
    done = Progress(10, 10, 5, 5, 1, 1, True)
    assert done.next_step("all").startswith("Nothing is left")


def config(**values: object) -> Config:
    return load_config(overrides=values, environ={})


def test_the_state_dataset_slug_fits_kaggles_limit() -> None:
    assert state_dataset("me", config(competition="dogs-vs-cats")) == "me/dogs-vs-cats-pipeline-state"
    long = state_dataset("me", config(**{"kernel.slug": "x" * 60}))
    assert len(long.split("/")[1]) == 50 and long.endswith("-state")


def test_a_budget_shorter_than_one_fold_of_the_last_version_is_refused(tmp_path: Path) -> None:
    fold = tmp_path / "run" / "fold-0"
    fold.mkdir(parents=True)
    (fold / "metrics.json").write_text('{"seconds": 300.0}')
    check_budget(config(**{"train.time_budget": 600.0}), tmp_path, "me/k version 1")
    with pytest.raises(ResumeError, match=r"less than one fold of me/k version 1 took \(300 s\)"):
        check_budget(config(**{"train.time_budget": 200.0}), tmp_path, "me/k version 1")


def test_a_state_archive_that_inflates_past_its_limits_is_refused_before_it_is_written(
    tmp_path: Path,
) -> None:
    archive = tmp_path / "input" / "k-state" / ARCHIVE
    archive.parent.mkdir(parents=True)
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as out:
        out.writestr("pipeline-state.json", json.dumps({"kernel": "me/k", "version": 1}))
        out.writestr("runs/demo/huge.bin", b"\0" * (300 * 2**20))
    assert archive.stat().st_size < 400_000
    with pytest.raises(ResumeError):
        restore_state(find_state(tmp_path / "input"), tmp_path / "working")
    assert not any(p.is_file() for p in (tmp_path / "working").rglob("*"))


def test_a_state_folder_is_copied_without_following_its_links(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("not yours")
    carried = tmp_path / "input" / "k-state" / "pipeline-state"
    (carried / "runs" / "demo").mkdir(parents=True)
    (carried / "pipeline-state.json").write_text(json.dumps({"kernel": "me/k", "version": 1}))
    (carried / "runs" / "demo" / "metrics.json").write_text("{}")
    (carried / "runs" / "demo" / "hostname").symlink_to("/etc/hostname")
    (carried / "runs" / "demo" / "elsewhere").symlink_to(outside, target_is_directory=True)
    working = tmp_path / "working"
    restore_state(find_state(tmp_path / "input"), working)
    copied = sorted(p.relative_to(working).as_posix() for p in working.rglob("*"))
    assert copied == ["runs", "runs/demo", "runs/demo/metrics.json"]


@pytest.mark.parametrize("damage", ["no manifest", "bad json", "journal folder", "not a zip"])
def test_a_damaged_state_is_one_resume_error(tmp_path: Path, damage: str) -> None:
    carried = tmp_path / "input" / "k-state" / "pipeline-state"
    (carried / "runs").mkdir(parents=True)
    if damage != "no manifest":
        text = "{not json" if damage == "bad json" else json.dumps({"kernel": "me/k", "version": 1})
        (carried / "pipeline-state.json").write_text(text)
    if damage == "journal folder":
        (carried / "runs" / "recipe.journal").mkdir()
    found: Path = carried
    if damage == "not a zip":
        found = tmp_path / ARCHIVE
        found.write_bytes(b"PK\x03\x04 cut short")
    with pytest.raises(ResumeError):
        restore_state(found, tmp_path / "working")
