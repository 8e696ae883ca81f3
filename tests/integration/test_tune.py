"""Optuna tuning: workers sharing a study (journal file and PostgreSQL), resume, pruning, failures."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from pipeline.acquire.index import ImageIndex
from pipeline.competitions import Competition
from pipeline.fit.train import holdout_split, train_run
from pipeline.fit.tune import (
    OWNER,
    fail_interrupted_trials,
    load_params,
    load_study,
    run_worker,
    summarize,
    with_params,
)
from pipeline.run import Run
from tests.conftest import tiny_config

SPACE = {
    "model.backbone": "choice:small-cnn",
    "data.image_size": "choice:48",
    "data.batch_size": "choice:16",
    "train.head_learning_rate": "log:1e-3:5e-3",
    "train.head_epochs": "int:1:2",
}
QUIET = {"data__deterministic": True, "train__patience": 10}


def states(study: optuna.Study) -> list[str]:
    return [trial.state.name for trial in sorted(study.trials, key=lambda t: t.number)]


def write_toml(path: Path, demo_archive_dir: Path, data_root: Path, extra: str = "") -> Path:
    lines = [
        'competition = "dogs-vs-cats-demo"',
        "[paths]",
        f'data_root = "{data_root}"',
        f'input_root = "{demo_archive_dir.parent}"',
        f'runs_root = "{data_root / "runs"}"',
        "[data]",
        "validation_workers = 2",
        "[tune.space]",
        *(f'"{key}" = "{value}"' for key, value in SPACE.items()),
        extra,
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def run_tune_cli(tmp_path: Path, demo_archive_dir: Path, *flags: str) -> subprocess.CompletedProcess:
    """`python -m pipeline tune` in a subprocess on the small demo competition, as a user runs it."""
    toml = write_toml(tmp_path / "tune.toml", demo_archive_dir, tmp_path / "data")
    command = [sys.executable, "-m", "pipeline", "tune", "--config", str(toml), *flags]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_two_worker_processes_share_one_journal_study(tmp_path: Path, demo_archive_dir: Path) -> None:
    done = run_tune_cli(tmp_path, demo_archive_dir, "--workers", "2", "--trials", "3", "--study", "shared")
    config = tiny_config(tmp_path / "data", tune__study="shared")
    study = load_study(config)
    numbers = sorted(t.number for t in study.trials)
    assert numbers == list(range(6))  # 2 workers x 3 trials, none lost, numbers unique
    assert all(state in ("COMPLETE", "PRUNED") for state in states(study))
    assert (
        tmp_path / "data" / "runs" / "dogs-vs-cats-demo" / "tune" / "shared" / "best_params.json"
    ).is_file()
    assert "Best trial" in done.stdout


def test_a_stopped_study_continues_its_trial_count(
    tmp_path: Path, demo: Competition, demo_index: ImageIndex
) -> None:
    config = tiny_config(tmp_path, tune__trials=1, tune__space=SPACE, **QUIET)
    run_worker(config, demo, demo_index)
    study = run_worker(config, demo, demo_index)  # "started again"
    assert [t.number for t in study.trials] == [0, 1]


def test_only_trials_whose_process_is_gone_are_marked_failed_so_tune_commands_coexist(tmp_path: Path) -> None:
    config = tiny_config(tmp_path, tune__space=SPACE)
    study = load_study(config)
    ended = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    owners = {
        "killed": {"host": socket.gethostname(), "pid": int(ended.stdout)},  # its process died inside it
        "running here": {"host": socket.gethostname(), "pid": os.getpid()},  # another tune command, alive
        "running elsewhere": {"host": "another-machine", "pid": 1},  # cannot be checked: left alone
    }
    trials = {name: study.ask() for name in owners}
    for name, trial in trials.items():
        trial.set_user_attr(OWNER, owners[name])
    assert fail_interrupted_trials(config) == [trials["killed"].number]
    assert states(load_study(config)) == ["FAIL", "RUNNING", "RUNNING"]
    assert fail_interrupted_trials(config) == []


def test_pruning_stops_a_clearly_worse_trial(
    tmp_path: Path, demo: Competition, demo_index: ImageIndex
) -> None:
    space = {**SPACE, "train.head_learning_rate": "log:1e-8:5e-3", "train.head_epochs": "int:3:3"}
    config = tiny_config(tmp_path, tune__trials=3, tune__space=space, **QUIET)
    study = load_study(config)
    for rate in (3e-3, 3e-3, 1e-8):  # two that learn, then one that cannot
        study.enqueue_trial({"train.head_learning_rate": rate})
    study = run_worker(config, demo, demo_index)
    assert states(study) == ["COMPLETE", "COMPLETE", "PRUNED"]
    pruned = study.trials[2]
    assert max(pruned.intermediate_values) < 3  # stopped before its last epoch


def test_a_trial_that_raises_is_recorded_as_failed(
    tmp_path: Path, demo: Competition, demo_index: ImageIndex
) -> None:
    space = {**SPACE, "model.backbone": "choice:small-cnn,xception"}  # Xception needs 71 px at least:
    config = tiny_config(tmp_path, tune__trials=2, tune__space=space, **QUIET)  # refused at 48 px
    study = load_study(config)
    study.enqueue_trial({"model.backbone": "xception"})
    study.enqueue_trial({"model.backbone": "small-cnn"})
    study = run_worker(config, demo, demo_index)
    assert states(study) == ["FAIL", "COMPLETE"]


def test_best_parameters_retrain_to_the_same_score(
    tmp_path: Path, demo: Competition, demo_index: ImageIndex
) -> None:
    config = tiny_config(tmp_path, tune__trials=2, tune__space=SPACE, **QUIET)
    study = run_worker(config, demo, demo_index)
    params = load_params(summarize(config, study))
    retrained = with_params(config, params)
    train, validation = holdout_split(config, demo_index)
    result = train_run(retrained, demo, train, validation, Run(tmp_path / "retrained"), verbose=0)
    assert result.read_metrics()["log_loss"] == pytest.approx(study.best_value, abs=0.01)  # stated tolerance
    assert (
        tmp_path / "runs" / "dogs-vs-cats-demo" / "tune" / "recipe" / "optimization_history.png"
    ).is_file()


def test_workers_share_a_study_in_postgresql(postgres: str, tmp_path: Path, demo_archive_dir: Path) -> None:
    run_tune_cli(
        tmp_path,
        demo_archive_dir,
        "--workers",
        "2",
        "--trials",
        "1",
        "--storage",
        postgres,
        "--study",
        "in-postgres",
    )
    study = optuna.load_study(study_name="in-postgres", storage=postgres)
    assert sorted(t.number for t in study.trials) == [0, 1]
    assert all(t.state.name in ("COMPLETE", "PRUNED") for t in study.trials)
    assert len({t.params["train.head_learning_rate"] for t in study.trials}) == 2  # two draws, not one twice
