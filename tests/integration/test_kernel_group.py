"""Kernel groups through the real client and the sandbox: shards pushed at once, one failing, gathered,
resumed with only the missing fold, predicted into one submission; a tuning group's journals merged."""

from __future__ import annotations

import re
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest

from pipeline import flow, layout
from pipeline.competitions import Competition
from pipeline.config import Config
from pipeline.demo.sandbox import SandboxServer
from pipeline.fit.tune import load_study
from pipeline.kaggle_api import KaggleGateway
from pipeline.kernel import group
from pipeline.run import Run
from pipeline.submit.submission_file import validate_submission
from pipeline.tables import read_id_csv
from tests.conftest import tiny_config

TINY = {
    "model__backbone": "small-cnn",
    "train__head_epochs": 2,
    "train__fine_epochs": 0,
    "kernel__accelerator": "none",
}


def quick_sleep(seconds: float) -> None:
    time.sleep(0.5)


def kill_when_running(server: SandboxServer, slug: str, version: int) -> None:
    """End a sandbox kernel's process as soon as it runs (a session killed by Kaggle)."""
    for _ in range(600):
        run = server.state.kernels.runs.get((slug, version))
        if run is not None and run.process is not None:
            run.process.kill()
            return
        time.sleep(0.05)
    raise AssertionError(f"kernel {slug} version {version} never started")


def test_a_group_with_a_failed_shard_is_resumed_with_its_missing_fold_and_gathered_into_one_run(
    kernel_sandbox: SandboxServer, tmp_path: Path, demo: Competition, demo_archive_dir: Path
) -> None:
    config = tiny_config(
        tmp_path,
        **TINY,
        train__folds=2,
        kernel__shards=2,
        paths__input_root=str(demo_archive_dir.parent),
        paths__submissions_root=str(tmp_path / "submissions"),
    )
    pushed = flow.kernel_push(config)
    assert [(s["id"], s["share"]["folds"]) for s in pushed["shards"]] == [
        ("sandbox/dogs-vs-cats-demo-pipeline-1", [0]),
        ("sandbox/dogs-vs-cats-demo-pipeline-2", [1]),
    ]
    kill_when_running(kernel_sandbox, "dogs-vs-cats-demo-pipeline-2", 1)
    table = group.status(config, KaggleGateway(), wait=True, sleep=quick_sleep)
    assert table["status"].tolist() == ["COMPLETE", "ERROR"]  # a row, not an exception

    run_dir = flow.kernel_output(config)  # fold 0 gathered, fold 1 missing: no submission yet
    assert [m.name for m in Run(run_dir).members()] == ["fold-0"]
    assert not list((tmp_path / "submissions").glob("*.csv"))

    resumed = flow.kernel_push(config, resume=True)  # only the missing fold, in one kernel
    assert [(s["id"], s["version"], s["share"]["folds"]) for s in resumed["shards"]] == [
        ("sandbox/dogs-vs-cats-demo-pipeline-1", 2, [1])
    ]
    assert group.status(config, KaggleGateway(), wait=True, sleep=quick_sleep)["status"].tolist() == [
        "COMPLETE"
    ]
    run_dir = flow.kernel_output(config, submit_it=True)
    run = Run(run_dir)
    assert [m.name for m in run.members()] == ["fold-0", "fold-1"]
    oof = run.read_oof()
    assert oof["id"].is_unique
    split = read_id_csv(layout.folds_file(config, 2))
    assert sorted(oof["id"]) == sorted(split["id"])  # every training image once, on the split pushed
    submissions = sorted((tmp_path / "submissions").glob("dogs-vs-cats-demo-*.csv"))
    assert len(submissions) == 1
    solution = pd.read_csv(demo_archive_dir / "solution.csv")
    validate_submission(read_id_csv(submissions[0]), solution.assign(label=0.5), demo)
    ledger = pd.read_csv(layout.ledger_path(config))
    assert ledger["status"].tolist() == ["fetched", "submitted"] and ledger["run"].tolist()[0] == run.name
    flow.kernel_output(config)  # gathering again adds nothing
    assert len(pd.read_csv(layout.ledger_path(config))) == 2


def tuning_group(tmp_path: Path, demo_archive_dir: Path, trials: int, storage: str = "") -> Config:
    space = {"model.backbone": "choice:small-cnn", "model.dropout": "float:0.0:0.5"}
    return tiny_config(
        tmp_path,
        **TINY,
        kernel__task="tune",
        kernel__shards=2,
        tune__trials=trials,
        tune__space=space,
        tune__study="group",
        tune__storage=storage,
        paths__input_root=str(demo_archive_dir.parent),
    )


def test_a_tuning_group_without_a_database_merges_each_shards_journal_once(
    kernel_sandbox: SandboxServer, tmp_path: Path, demo_archive_dir: Path
) -> None:
    config = tuning_group(tmp_path, demo_archive_dir, trials=4)
    flow.kernel_push(config)
    assert (group.status(config, KaggleGateway(), wait=True, sleep=quick_sleep)["status"] == "COMPLETE").all()
    flow.kernel_output(config)
    flow.kernel_output(config)  # a second gathering merges nothing twice
    study = load_study(config)
    done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    assert len(study.get_trials(states=done)) == len(study.trials) == 4
    assert len({t.params["model.dropout"] for t in study.trials}) == 4  # no draw repeated across shards
    assert (layout.study_dir(config) / "best_params.json").is_file()


def test_a_tuning_group_shares_one_study_in_postgresql(
    kernel_sandbox: SandboxServer, postgres: str, tmp_path: Path, demo_archive_dir: Path
) -> None:
    config = tuning_group(tmp_path, demo_archive_dir, trials=2, storage=postgres)
    flow.kernel_push(config)  # the study is made here first: two shards starting at once never race
    assert (group.status(config, KaggleGateway(), wait=True, sleep=quick_sleep)["status"] == "COMPLETE").all()
    flow.kernel_output(config)
    study = optuna.load_study(study_name="group", storage=postgres)
    assert len(study.trials) == 2 and all(t.state.is_finished() for t in study.trials)
    workers = sorted(t.user_attrs["owner"]["worker"] for t in study.trials)
    assert workers == [0, 1]  # one trial from each shard, into the one study


def test_a_run_folder_the_gathering_would_refuse_is_refused_before_any_upload(
    kernel_sandbox: SandboxServer, tmp_path: Path, demo_archive_dir: Path
) -> None:
    config = tiny_config(
        tmp_path, **TINY, train__folds=2, kernel__shards=2, paths__input_root=str(demo_archive_dir.parent)
    )
    trained_here = Run(layout.kfold_run_dir(config)).fold(0)  # a fold `make train` left here
    trained_here.path.mkdir(parents=True)
    trained_here.write_metrics({"log_loss": 0.3})
    calls = len(kernel_sandbox.state.calls)
    with pytest.raises(group.ShardMismatchError, match=re.escape(str(layout.kfold_run_dir(config)))):
        flow.kernel_push(config)
    assert "SaveKernel" not in kernel_sandbox.state.calls[calls:]
    assert group.read_group(config) is None
