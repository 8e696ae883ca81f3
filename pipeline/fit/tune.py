"""Optuna search of the transfer-learning recipe: resumable, prunable, shareable between workers.

Every trial trains on the same saved stratified split (fold 0, as `train --holdout`) and is
scored by validation log loss; the other scores are stored as trial attributes. Storage is a
journal file under runs/ by default, or any RDB URL (PostgreSQL, MySQL) shared by workers on
several machines. A study name continues where it stopped.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import optuna
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna_integration import KerasPruningCallback

from pipeline import layout
from pipeline.acquire.index import ImageIndex
from pipeline.atomic import write_text
from pipeline.competitions import Competition
from pipeline.config import Config, ConfigError, apply_settings, parse_space_entry, validate
from pipeline.fit.splits import holdout_split
from pipeline.fit.train import train_run
from pipeline.run import Run


def suggest(trial: optuna.Trial, space: dict[str, str]) -> dict[str, Any]:
    """Draw one value for every search-space entry; keys are dotted setting names (model.backbone...)."""
    params: dict[str, Any] = {}
    for key, spec in space.items():
        kind, values = parse_space_entry(key, spec)
        if kind == "choice":
            params[key] = trial.suggest_categorical(key, values)
        elif kind == "int":
            params[key] = trial.suggest_int(key, values[0], values[1])
        else:
            params[key] = trial.suggest_float(key, values[0], values[1], log=kind == "log")
    return params


def with_params(config: Config, params: dict[str, Any]) -> Config:
    """`config` with tuned settings (dotted names) applied."""
    return validate(apply_settings(config, params, "tuned parameters"))


def open_storage(config: Config) -> optuna.storages.BaseStorage:
    """The configured RDB (with heartbeats: a killed worker's trial is failed and retried once),
    or a journal file under the study's folder."""
    if config.tune.storage:
        return optuna.storages.RDBStorage(
            config.tune.storage,
            heartbeat_interval=60,
            grace_period=180,
            failed_trial_callback=optuna.storages.RetryFailedTrialCallback(max_retry=1),
        )
    path = layout.study_journal(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(path)))


def make_pruner(config: Config) -> optuna.pruners.BasePruner:
    """Median (default), Hyperband, or no pruning, stepping on the shared epoch timeline."""
    if config.tune.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1)
    if config.tune.pruner == "none":
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1)


def sampler_seed(seed: int, worker: int, trials_so_far: int) -> int:
    """The TPE sampler's seed: per worker, and new at every restart of the study, so a restarted
    study never draws its first trials again (TPE still conditions on every finished trial)."""
    return seed + 1000 * worker + 7919 * trials_so_far


def load_study(config: Config, worker: int = 0) -> optuna.Study:
    """Create or continue the configured study, with a TPE sampler seeded per worker and restart."""
    study = optuna.create_study(
        study_name=config.tune.study,
        storage=open_storage(config),
        direction="minimize",
        pruner=make_pruner(config),
        load_if_exists=True,
    )
    seed = sampler_seed(config.data.seed, worker, len(study.get_trials(deepcopy=False)))
    study.sampler = optuna.samplers.TPESampler(seed=seed)
    return study


OWNER = "owner"  # trial user attribute: {"host", "pid", "worker"} of the process running it


def owner_is_gone(owner: dict | None, started: dt.datetime | None, now: dt.datetime) -> bool:
    """True when the process that ran a RUNNING trial is known to have ended: it ran on this host
    and its PID is gone. A trial of another host is left alone; one without an owner (created a
    moment before its owner was recorded) counts as gone after a minute."""
    if not owner:
        return started is None or (now - started).total_seconds() > 60
    if owner.get("host") != socket.gethostname():
        return False
    try:
        os.kill(int(owner["pid"]), 0)  # signal 0: is it alive?
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def fail_interrupted_trials(config: Config) -> list[int]:
    """Mark trials left RUNNING by a killed `tune` as failed and return their numbers; trials of
    `tune` commands still running (here or on another host) are left to them.

    For journal files; RDB storages do this themselves through heartbeats. Call after the study
    exists and before any worker starts.
    """
    storage = open_storage(config)
    if not isinstance(storage, JournalStorage):
        return []
    study_id = storage.get_study_id_from_name(config.tune.study)
    running = storage.get_all_trials(study_id, deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    now = dt.datetime.now()
    gone = [t for t in running if owner_is_gone(t.user_attrs.get(OWNER), t.datetime_start, now)]
    for trial in gone:
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        storage.set_trial_state_values(trial_id, optuna.trial.TrialState.FAIL)
    if gone:
        print(f"Trials {[t.number for t in gone]} were interrupted in an earlier run; marked as failed.")
    return [t.number for t in gone]


def objective(
    trial: optuna.Trial, config: Config, competition: Competition, index: ImageIndex, worker: int = 0
) -> float:
    """Validation log loss of the recipe drawn for `trial`, on the saved holdout split."""
    trial.set_user_attr(OWNER, {"host": socket.gethostname(), "pid": os.getpid(), "worker": worker})
    params = suggest(trial, config.tune.space)
    trial_config = with_params(config, params)
    train, validation = holdout_split(config, index)  # the base seed and fraction: the same split for all
    try:
        result = train_run(
            trial_config,
            competition,
            train,
            validation,
            Run(layout.study_dir(config) / f"trial-{trial.number:04d}"),
            callbacks=[KerasPruningCallback(trial, "val_loss"), keras.callbacks.TerminateOnNaN()],
            verbose=0,
        )
    finally:
        keras.backend.clear_session()
    metrics = result.read_metrics()
    for key, value in metrics.items():  # accuracy, MCC or F1 and kappa, ROC AUC: shown beside the loss
        if key not in ("log_loss", "seconds"):
            trial.set_user_attr(key, value)
    loss = metrics["log_loss"]
    if not math.isfinite(loss):
        raise FloatingPointError(f"trial {trial.number} diverged (log loss {loss})")
    return loss


class TimeBudget:
    """An Optuna callback that stops the study before a trial that would not finish in time
    starts: when the time left is less than the longest trial so far (the timeout of
    `study.optimize` only stops starting trials once it has passed)."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic):
        self.seconds, self.clock = seconds, clock
        self.started, self.last, self.longest = clock(), clock(), 0.0

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        now = self.clock()
        self.longest, self.last = max(self.longest, now - self.last), now
        left = self.seconds - (now - self.started)
        if left < self.longest:
            print(
                f"Time budget: {left:.0f} s left, a trial takes up to {self.longest:.0f} s; "
                "stopping here (the study continues when tune runs again)."
            )
            study.stop()


def run_worker(config: Config, competition: Competition, index: ImageIndex, worker: int = 0) -> optuna.Study:
    """Run this worker's trials; failures (NaN, out of memory) are recorded as failed and the study
    goes on. With `tune.timeout`, no trial starts that the longest trial so far says would not end
    in time."""
    study = load_study(config, worker)
    study.optimize(
        lambda trial: objective(trial, config, competition, index, worker),
        n_trials=config.tune.trials,
        timeout=config.tune.timeout or None,
        catch=(Exception,),
        gc_after_trial=True,
        callbacks=[TimeBudget(config.tune.timeout)] if config.tune.timeout else [],
    )
    return study


def worker_trials(study: optuna.Study, worker: int) -> list[optuna.trial.FrozenTrial]:
    """The finished (complete or pruned) trials that worker `worker` ran in `study`."""
    return [
        trial
        for trial in study.get_trials(deepcopy=False)
        if trial.state.is_finished()
        and trial.state != optuna.trial.TrialState.FAIL
        and (trial.user_attrs.get(OWNER) or {}).get("worker") == worker
    ]


def best_params(study: optuna.Study) -> dict[str, Any]:
    """The best trial's parameters as dotted setting names, ready for `train --params`."""
    return dict(study.best_trial.params)


def summarize(config: Config, study: optuna.Study, top: int = 10) -> Path | None:
    """Print the top trials, save best_params.json and the history and importance plots."""
    out = layout.study_dir(config)
    out.mkdir(parents=True, exist_ok=True)
    frame = study.trials_dataframe(attrs=("number", "value", "state", "params", "user_attrs", "duration"))
    counts = frame["state"].value_counts().to_dict()
    print(f"Study {study.study_name}: {len(frame)} trials {counts}")
    finished = frame[frame["state"] == "COMPLETE"].sort_values("value")
    if finished.empty:
        print("No trial finished yet.")
        return None
    shown = finished.drop(columns=[f"user_attrs_{OWNER}"], errors="ignore").head(top)
    print(shown.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    path = out / "best_params.json"
    best = {"trial": study.best_trial.number, "value": study.best_value, "params": best_params(study)}
    write_text(path, json.dumps(best, indent=2) + "\n")
    print(f"Best trial {best['trial']}: log loss {best['value']:.4f}; parameters in {path}")
    _plots(study, out)
    return path


def _plots(study: optuna.Study, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as optuna_plots

    for name, draw in (
        ("optimization_history", optuna_plots.plot_optimization_history),
        ("param_importances", optuna_plots.plot_param_importances),
    ):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                axis = draw(study)
        except (ValueError, RuntimeError) as error:  # importances need two finished trials
            print(f"{name}: not drawn ({error})")
            continue
        axis.figure.savefig(out / f"{name}.png", dpi=100, bbox_inches="tight")
        plt.close(axis.figure)


def load_params(path: Path) -> dict[str, Any]:
    """The settings saved by `summarize` (or any JSON file {setting: value} / {"params": {...}})."""
    if not path.is_file():
        raise ConfigError(
            f"parameters file {path} does not exist: run `make tune` first, or pass a JSON file."
        )
    data = json.loads(path.read_text())
    return data.get("params", data)


def best_params_path(config: Config) -> Path:
    """Where `summarize` saves the best parameters of the configured study."""
    return layout.study_dir(config) / "best_params.json"


def run_worker_processes(config: Config) -> list[int]:
    """Run `tune.workers` worker processes on one study; return the indexes of those that failed.

    Each worker is `python -m pipeline tune` on the resolved configuration, saved beside the study.
    """
    resolved = config.save(layout.study_dir(config))
    command = [sys.executable, "-m", "pipeline", "tune", "--config", str(resolved), "--workers", "1"]
    workers = [subprocess.Popen([*command, "--worker-index", str(i)]) for i in range(config.tune.workers)]
    return [i for i, worker in enumerate(workers) if worker.wait() != 0]
