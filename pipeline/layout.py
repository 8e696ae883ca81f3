"""Every folder and file name under data/, runs/ and submissions/, and how runs are named and found.

No other module joins those roots: each asks here. Pure path arithmetic plus a few reads of
what is on disk (which runs are finished); no TensorFlow, so `submit` and `leaderboard` stay light.

    data/<slug>/                      archive, train/, test/, sample submission
        index/                        train.csv, test.csv, rejects.csv, config.json
        folds-<k>-seed<s>.csv         the saved stratified split
        converted/  cache/            PNG copies of odd formats; the disk cache of resized images
    data/_sandbox/<slug>/             the generated demo competition the sandbox serves
    runs/<slug>/<run>/                a k-fold run (fold-<k>/ inside) or a holdout run (<run>-holdout)
    runs/<slug>/preview/  tune/       augmented batches; Optuna studies
    runs/<slug>/kernel/  kernel-v<N>/ the Kaggle kernel bundle; the outputs of its version N
    runs/bench/                       benchmark tables
    submissions/<slug>-<run>-<UTC>.csv, ledger.csv, <slug>-scores.png
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

from pipeline.config import Config
from pipeline.run import Run

HOLDOUT_SUFFIX = "-holdout"
_STAMP = re.compile(r"-(\d{8}T\d{6}Z)\.csv$")


# --- data/ ---------------------------------------------------------------------------------------
def competition_dir(config: Config) -> Path:
    """data/<slug>/: this competition's downloads, images and index (writable)."""
    return Path(config.paths.data_root) / config.competition


def input_dir(config: Config) -> Path:
    """Where the competition's original files are read from (read-only on Kaggle: /kaggle/input/<slug>)."""
    return Path(config.paths.input_root or config.paths.data_root) / config.competition


def index_dir(config: Config) -> Path:
    """data/<slug>/index/: train.csv, test.csv, rejects.csv."""
    return competition_dir(config) / "index"


def converted_dir(config: Config) -> Path:
    """data/<slug>/converted/: PNG copies of images TensorFlow cannot decode."""
    return competition_dir(config) / "converted"


def image_cache_dir(config: Config) -> Path:
    """data/<slug>/cache/: the disk cache of resized images (data.cache = disk)."""
    return competition_dir(config) / "cache"


def features_dir(config: Config) -> Path:
    """data/<slug>/features/: the cached backbone features of `stack`, one file per backbone and size."""
    return competition_dir(config) / "features"


def throughput_file(config: Config) -> Path:
    """data/throughput.json: images per second of each backbone and size on this machine, measured
    once (the auto recipe's plan)."""
    return Path(config.paths.data_root) / "throughput.json"


def folds_file(config: Config, n_splits: int) -> Path:
    """data/<slug>/folds-<k>-seed<seed>.csv: the saved stratified split."""
    return competition_dir(config) / f"folds-{n_splits}-seed{config.data.seed}.csv"


def sandbox_dir(config: Config) -> Path:
    """data/_sandbox/<slug>/: the generated competition archive and its hidden solution."""
    return Path(config.paths.data_root) / "_sandbox" / config.competition


def kaggle_kernel_paths(kaggle_root: Path, competition_root: Path, scratch: Path) -> dict[str, str]:
    """The path settings inside a Kaggle kernel: competition files read-only where Kaggle attached
    them, unpacked images in scratch space, runs and submissions under /kaggle/working (saved)."""
    return {
        "paths.input_root": str(competition_root),
        "paths.data_root": str(scratch),
        "paths.runs_root": str(kaggle_root / "working" / "runs"),
        "paths.submissions_root": str(kaggle_root / "working" / "submissions"),
    }


# --- runs/ ---------------------------------------------------------------------------------------
def competition_runs(config: Config) -> Path:
    """runs/<slug>/: every run of the configured competition."""
    return Path(config.paths.runs_root) / config.competition


def run_name(config: Config) -> str:
    """<backbone>-<size>px (-pseudo with pseudo-labels) unless the configuration names the run."""
    pseudo = "-pseudo" if config.train.pseudo_label else ""
    return config.train.run_name or f"{config.model.backbone}-{config.data.image_size}px{pseudo}"


def lr_find_file(config: Config) -> Path:
    """runs/<slug>/lr-find/<backbone>-<size>px.json: the range test's curves and suggestions (a
    plot of the same name beside it)."""
    return competition_runs(config) / "lr-find" / f"{config.model.backbone}-{config.data.image_size}px.json"


def kfold_run_dir(config: Config) -> Path:
    """runs/<slug>/<run>/: a k-fold run, with one fold-<k>/ training run inside per fold."""
    return competition_runs(config) / run_name(config)


def holdout_run_dir(config: Config) -> Path:
    """runs/<slug>/<run>-holdout/: one training run on the holdout split."""
    return competition_runs(config) / (run_name(config) + HOLDOUT_SUFFIX)


def find_run(config: Config) -> Run | None:
    """The run to predict with: `predict.run` if set, else the competition's newest finished run,
    whatever backbone and size made it (flags need not be repeated); None when there is none."""
    if config.predict.run:
        chosen = Run(competition_runs(config) / config.predict.run)
        return chosen if chosen.has_finished_models else None
    finished = [Run(competition_runs(config) / name) for name in finished_runs(config)]
    return max(finished, key=Run.finished_at) if finished else None


def export_dir(run: Run) -> Path:
    """runs/<slug>/<run>/export/: the run's ensemble as one model (`export`)."""
    return run.path / "export"


class SplitMismatchError(ValueError):
    """The saved fold split was made from other images than today's index."""


class NoModelsError(FileNotFoundError):
    """There is no finished run to predict with."""


def require_run(config: Config) -> Run:
    """The run to predict with (`predict.run`, else the newest finished one), or a NoModelsError
    that lists the finished runs and says what to do."""
    run = find_run(config)
    if run is not None:
        return run
    others = finished_runs(config)
    hint = f" Finished runs: {', '.join(others)} (choose one with --run NAME)." if others else ""
    wanted = f"run {config.predict.run}" if config.predict.run else "finished run"
    raise NoModelsError(
        f"no {wanted} in {competition_runs(config)}: run `make train` "
        f"(or `python -m pipeline train --holdout`) first.{hint}"
    )


def finished_runs(config: Config) -> list[str]:
    """Names of every finished run of the competition, for error messages."""
    runs = competition_runs(config)
    if not runs.is_dir():
        return []
    return sorted(d.name for d in runs.glob("*") if d.is_dir() and Run(d).has_finished_models)


def kernel_dir(config: Config) -> Path:
    """runs/<slug>/kernel/: the bundle last built or pushed, and pushed.json (id, version, URL)."""
    return competition_runs(config) / "kernel"


def kernel_output_dir(config: Config, version: int) -> Path:
    """runs/<slug>/kernel-v<N>/: the outputs of version N of the pushed kernel."""
    return competition_runs(config) / f"kernel-v{version}"


def kernel_shard_dir(config: Config, shard: int) -> Path:
    """runs/<slug>/kernel/shard-<i>/: the bundle of shard i of a pushed group."""
    return kernel_dir(config) / f"shard-{shard}"


def kernel_group_file(config: Config) -> Path:
    """runs/<slug>/kernel/group.json: the shards of the last pushed group, their shares and versions."""
    return kernel_dir(config) / "group.json"


def kernel_shard_output_dir(config: Config, slug: str, version: int) -> Path:
    """runs/<slug>/kernel-<kernel slug>-v<N>/: the fetched outputs of version N of one shard."""
    return competition_runs(config) / f"kernel-{slug}-v{version}"


def kernel_state_dir(config: Config) -> Path:
    """runs/<slug>/kernel-state/: the previous version's state packed for `kernel push --resume`."""
    return competition_runs(config) / "kernel-state"


def weights_dataset_dir(config: Config) -> Path:
    """runs/<slug>/weights-dataset/: the backbones' weights files packed by `weights-dataset`."""
    return competition_runs(config) / "weights-dataset"


def preview_dir(config: Config) -> Path:
    """runs/<slug>/preview/: a grid of augmented training images."""
    return competition_runs(config) / "preview"


def tune_dir(config: Config) -> Path:
    """runs/<slug>/tune/: journal files of the studies."""
    return competition_runs(config) / "tune"


def study_dir(config: Config) -> Path:
    """runs/<slug>/tune/<study>/: trial runs, best parameters, plots."""
    return tune_dir(config) / config.tune.study


def study_journal(config: Config) -> Path:
    """runs/<slug>/tune/<study>.journal: the default Optuna storage."""
    return tune_dir(config) / f"{config.tune.study}.journal"


def bench_dir(runs_root: str | Path = "runs") -> Path:
    """runs/bench/: benchmark tables and their unpacked photos."""
    return Path(runs_root) / "bench"


# --- submissions/ --------------------------------------------------------------------------------
def submissions_dir(config: Config) -> Path:
    """submissions/."""
    return Path(config.paths.submissions_root)


def ledger_path(config: Config) -> Path:
    """submissions/ledger.csv: every submission attempt and its scores."""
    return submissions_dir(config) / "ledger.csv"


def scores_plot(config: Config) -> Path:
    """submissions/<slug>-scores.png: CV against public score."""
    return submissions_dir(config) / f"{config.competition}-scores.png"


def new_submission_path(config: Config, run: str, now: dt.datetime | None = None) -> Path:
    """submissions/<slug>-<run>-<UTC time>.csv for a new submission of `run`."""
    stamp = (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%dT%H%M%SZ")
    return submissions_dir(config) / f"{config.competition}-{run}-{stamp}.csv"


def submission_run(path: Path, competition: str) -> str | None:
    """The run a submission file was made from, read from its name; None for other names."""
    prefix = f"{competition}-"
    match = _STAMP.search(path.name)
    if not path.name.startswith(prefix) or match is None:
        return None
    return path.name[len(prefix) : match.start()] or None


def latest_submission(config: Config) -> Path | None:
    """The competition's newest submission file (of `predict.run` when it is set)."""
    found = [
        p
        for p in submissions_dir(config).glob(f"{config.competition}-*.csv")
        if (run := submission_run(p, config.competition)) is not None
        and (not config.predict.run or run == config.predict.run)
    ]
    return max(found, key=lambda p: (_STAMP.search(p.name).group(1), p.stat().st_mtime)) if found else None
