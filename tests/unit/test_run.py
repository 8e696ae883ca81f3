"""The run object: one owner of every file under runs/<slug>/<run>/."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from pipeline import run as run_module
from pipeline.locks import exclusive
from pipeline.run import PostProcessing, Run

REPOSITORY = Path(run_module.__file__).parents[1]


def chosen(**values: object) -> PostProcessing:
    scores = {"log_loss": 0.30, "accuracy": 0.90, "mcc": 0.8, "roc_auc": 0.95}
    return PostProcessing(
        **{
            "views": ["original", "hflip"],
            "average": "logit",
            "folds": 2,
            "oof_single_view": scores,
            "oof_with_tta": scores,
            **values,
        }
    )


def test_the_cv_score_is_the_post_processed_one_in_the_competitions_metric(tmp_path: Path) -> None:
    run = Run(tmp_path / "run")
    assert run.cv_score("log_loss") is None  # predict has not run
    clipped = {"log_loss": 0.25, "accuracy": 0.90, "mcc": 0.8, "roc_auc": 0.95}
    run.write_postprocessing(chosen(clip=0.01, oof_with_tta_and_clip=clipped))
    assert run.cv_score("log_loss") == 0.25
    assert run.read_postprocessing().clip == 0.01
    run.write_postprocessing(chosen(threshold=0.45, oof_accuracy_at_threshold=0.93))
    assert run.cv_score("accuracy") == 0.93
    assert run.cv_score("log_loss") == 0.30


def test_a_run_made_before_the_rename_still_gives_its_cv_score(tmp_path: Path) -> None:
    run = Run(tmp_path / "old")
    run.path.mkdir()
    legacy = '{"run": "old", "folds": 1, "views": ["original"], "average": "logit", "clip": 0.02,'
    legacy += ' "oof_single_view": {"log_loss": 0.4}, "oof_with_tta": {"log_loss": 0.4},'
    legacy += ' "oof_with_tta_and_clip": {"log_loss": 0.35}, "oof_log_loss_by_space": {}}'
    (run.path / "ensemble.json").write_text(legacy)
    assert run.cv_score("log_loss") == 0.35


def test_files_are_written_whole_and_read_back_typed(tmp_path: Path) -> None:
    run = Run(tmp_path / "run")
    frame = pd.DataFrame({"id": ["007", "12"], "label": [0, 1], "probability": [0.1, 0.8]})
    run.write_validation(frame)
    assert run.read_validation()["id"].tolist() == ["007", "12"]  # ids stay text
    run.write_cross_validation(frame.assign(fold=0), [{"fold": "0", "log_loss": 0.2}, {"fold": "all"}])
    assert run.read_cv_table()["fold"].astype(str).tolist() == ["0", "all"]
    assert run.read_oof()["id"].tolist() == ["007", "12"]
    assert not [p for p in run.path.iterdir() if "partial" in p.name]


def test_a_folder_held_by_a_command_is_in_use(tmp_path: Path) -> None:
    run = Run(tmp_path / "run")
    with exclusive(run.path, "training", wait=False):
        assert run.state() == "in use"
    assert run.state() == "unfinished"
    run.write_metrics({"log_loss": 0.3})
    assert run.state() == "finished" and run.members() == [run]


@pytest.mark.parametrize("folder", ["pipeline", "benchmarks", "kernels"])
def test_no_module_outside_the_run_spells_a_run_file_name(folder: str) -> None:
    names = [*run_module.FILE_NAMES, "tta-", "history-", "fold-"]
    pattern = re.compile("|".join(re.escape(f'"{n}') for n in names) + "|" + re.escape('/ "backup"'))
    offenders = [
        f"{path.relative_to(REPOSITORY)}: {match.group(0)}"
        for path in (REPOSITORY / folder).rglob("*.py")
        if path != Path(run_module.__file__)
        for match in pattern.finditer(path.read_text())
    ]
    assert offenders == []
