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

HOLDOUT_SUFFIX = "-holdout"
FINISHED = "metrics.json"  # written last by a training run: marks it finished
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
    """<backbone>-<size>px unless the configuration names the run."""
    return config.train.run_name or f"{config.model.backbone}-{config.data.image_size}px"


def kfold_run_dir(config: Config) -> Path:
    """runs/<slug>/<run>/: a k-fold run, with one fold-<k>/ training run inside per fold."""
    return competition_runs(config) / run_name(config)


def holdout_run_dir(config: Config) -> Path:
    """runs/<slug>/<run>-holdout/: one training run on the holdout split."""
    return competition_runs(config) / (run_name(config) + HOLDOUT_SUFFIX)


def fold_dir(run_dir: Path, fold: int) -> Path:
    """<run>/fold-<k>/."""
    return run_dir / f"fold-{fold}"


def member_dirs(run_dir: Path) -> list[Path]:
    """The finished models of a run: its finished folds in order, or the run itself if it is one."""
    folds = [d for d in run_dir.glob("fold-*") if (d / FINISHED).is_file()]
    if folds:
        return sorted(folds, key=lambda d: int(d.name.split("-")[1]))
    return [run_dir] if (run_dir / FINISHED).is_file() else []


def _finished_at(run_dir: Path) -> float:
    return max((d / FINISHED).stat().st_mtime for d in member_dirs(run_dir))


def find_run(config: Config) -> Path | None:
    """The run to predict with: `predict.run` if set, else the newest finished run (k-fold or holdout)
    of the configured run name; None when there is none."""
    runs = competition_runs(config)
    if config.predict.run:
        chosen = runs / config.predict.run
        return chosen if member_dirs(chosen) else None
    finished = [d for d in (kfold_run_dir(config), holdout_run_dir(config)) if member_dirs(d)]
    return max(finished, key=_finished_at) if finished else None


def finished_runs(config: Config) -> list[str]:
    """Names of every finished run of the competition, for error messages."""
    runs = competition_runs(config)
    return sorted(d.name for d in runs.glob("*") if d.is_dir() and member_dirs(d)) if runs.is_dir() else []


def kernel_dir(config: Config) -> Path:
    """runs/<slug>/kernel/: the bundle last built or pushed, and pushed.json (id, version, URL)."""
    return competition_runs(config) / "kernel"


def kernel_output_dir(config: Config, version: int) -> Path:
    """runs/<slug>/kernel-v<N>/: the outputs of version N of the pushed kernel."""
    return competition_runs(config) / f"kernel-v{version}"


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
    """The newest submission file of the configured run (k-fold or holdout, or `predict.run`)."""
    runs = (
        {config.predict.run} if config.predict.run else {run_name(config), run_name(config) + HOLDOUT_SUFFIX}
    )
    found = [
        p
        for p in submissions_dir(config).glob(f"{config.competition}-*.csv")
        if submission_run(p, config.competition) in runs
    ]
    return max(found, key=lambda p: (_STAMP.search(p.name).group(1), p.stat().st_mtime)) if found else None
