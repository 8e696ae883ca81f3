"""One layout of folders: every path under data/, runs/, submissions/, and how runs are found."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from pipeline import layout
from pipeline.config import load_config
from pipeline.run import Run


def config_at(root: Path, **values: object):
    base = {
        "competition": "dogs-vs-cats",
        "paths.data_root": str(root / "data"),
        "paths.runs_root": str(root / "runs"),
        "paths.submissions_root": str(root / "submissions"),
        "model.backbone": "small-cnn",
        "data.image_size": 64,
    }
    return load_config(overrides={**base, **values}, environ={})


def finish(run: Run, mtime: float) -> None:
    run.write_metrics({"log_loss": 0.5})
    os.utime(run.path / "metrics.json", (mtime, mtime))


def test_paths_follow_the_documented_tree(tmp_path: Path) -> None:
    config = config_at(tmp_path)
    data, runs = tmp_path / "data" / "dogs-vs-cats", tmp_path / "runs" / "dogs-vs-cats"
    assert layout.competition_dir(config) == data == layout.input_dir(config)
    assert layout.index_dir(config) == data / "index"
    assert layout.folds_file(config, 5) == data / "folds-5-seed42.csv"
    assert layout.kfold_run_dir(config) == runs / "small-cnn-64px"
    assert layout.holdout_run_dir(config) == runs / "small-cnn-64px-holdout"
    assert layout.study_journal(config) == runs / "tune" / "recipe.journal"
    assert layout.ledger_path(config) == tmp_path / "submissions" / "ledger.csv"
    named = config_at(tmp_path, **{"train.run_name": "mine", "paths.input_root": "/kaggle/input"})
    assert layout.kfold_run_dir(named) == runs / "mine"
    assert layout.input_dir(named) == Path("/kaggle/input/dogs-vs-cats")


def test_submission_names_carry_their_run(tmp_path: Path) -> None:
    config = config_at(tmp_path)
    when = dt.datetime(2026, 11, 25, 9, 30, 0, tzinfo=dt.UTC)
    path = layout.new_submission_path(config, "small-cnn-64px-holdout", when)
    assert path.name == "dogs-vs-cats-small-cnn-64px-holdout-20261125T093000Z.csv"
    assert layout.submission_run(path, "dogs-vs-cats") == "small-cnn-64px-holdout"
    assert layout.submission_run(Path("my-own.csv"), "dogs-vs-cats") is None
    assert layout.submission_run(path, "dogs-vs-cats-redux-kernels-edition") is None


def test_the_newest_finished_run_is_found_kfold_or_holdout(tmp_path: Path) -> None:
    config = config_at(tmp_path)
    assert layout.find_run(config) is None
    kfold, holdout = Run(layout.kfold_run_dir(config)), Run(layout.holdout_run_dir(config))
    kfold.fold(0).path.mkdir(parents=True)  # unfinished fold: not a run to predict with
    assert layout.find_run(config) is None
    assert kfold.state() == "unfinished"
    finish(holdout, 1_000)
    assert layout.find_run(config) == holdout
    finish(kfold.fold(1), 2_000)
    finish(kfold.fold(0), 1_500)
    assert layout.find_run(config) == kfold  # newer
    assert kfold.members() == [kfold.fold(0), kfold.fold(1)]
    assert holdout.members() == [holdout]
    assert kfold.state() == "finished"
    chosen = config_at(tmp_path, **{"predict.run": holdout.name})
    assert layout.find_run(chosen) == holdout
    assert layout.finished_runs(config) == [kfold.name, holdout.name]


def test_the_latest_submission_is_the_competitions_newest_or_of_the_chosen_run(tmp_path: Path) -> None:
    config = config_at(tmp_path)
    folder = tmp_path / "submissions"
    folder.mkdir()
    older = folder / "dogs-vs-cats-small-cnn-64px-20261125T090000Z.csv"
    newer = folder / "dogs-vs-cats-small-cnn-64px-holdout-20261125T100000Z.csv"
    other = folder / "dogs-vs-cats-resnet50v2-224px-20261125T110000Z.csv"
    for path in (older, newer, other):
        path.write_text("id,label\n")
    assert layout.latest_submission(config) == other  # whatever backbone made it
    assert layout.latest_submission(config_at(tmp_path, **{"predict.run": "small-cnn-64px-holdout"})) == newer
    assert layout.latest_submission(config_at(tmp_path, **{"predict.run": "small-cnn-96px"})) is None


def test_no_other_module_joins_the_data_runs_or_submissions_roots() -> None:
    package = Path(layout.__file__).parent
    roots = ("paths.data_root", "paths.runs_root", "paths.submissions_root", "paths.input_root")
    offenders = [
        f"{path.relative_to(package)}: {root}"
        for path in package.rglob("*.py")
        if path.name not in ("layout.py", "config.py")
        for root in roots
        if root in path.read_text()
    ]
    assert offenders == []
