"""A training run: every file under runs/<slug>/<run>/, behind one object.

    run = Run(layout.kfold_run_dir(config))   # or layout.find_run(config)
    run.members()                              # its finished models: fold-<k>/ runs, or itself
    run.read_validation(); run.read_postprocessing().cv_score(metric)

A k-fold run holds one member run per fold (fold-<k>/), a holdout run is its own single member.
No other module spells a file name of a run (a test checks it); every file that a later command
trusts is written whole to a temporary name, then renamed. No TensorFlow here: `submit`,
`leaderboard` and `report`'s checks read runs without it.

    <run>/fold-<k>/ refit-<k>/         k-fold: one member per fold; models refit on all the images
    <run>/config.json                  the resolved configuration the run was trained with
          state.json                   the phases finished so far (resume after an interruption)
          head.weights.h5 fine.weights.h5  the weights at the end of each phase
          backup/<phase>/              Keras' BackupAndRestore checkpoint of an unfinished phase
          history-<phase>.csv history.csv  per-epoch logs of each phase; both phases in one table
          tensorboard/                 TensorBoard logs
          model.keras                  the trained classifier
          validation_predictions.csv   id, label, probability of its validation images
          metrics.json                 validation scores: written last, marks the member finished
          tta-<views>.npz              cached predictions of validation and test images per TTA view
          oof.csv cv.csv cv.json       k-fold: out-of-fold predictions, scores per fold and overall
          postprocessing.json          how predict combined its members (averaging, clip, threshold)
          test_predictions.csv         the post-processed test predictions
          report.html report/          the report page and its pictures
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.atomic import write_atomically, write_text
from pipeline.config import CONFIG_FILE, Config
from pipeline.locks import is_held
from pipeline.tables import read_id_csv

CONFIG = CONFIG_FILE  # owned by pipeline.config: every saved configuration has this name
STATE = "state.json"
METRICS = "metrics.json"  # written last by a member: marks it finished
MODEL = "model.keras"
HISTORY = "history.csv"
VALIDATION = "validation_predictions.csv"
OOF = "oof.csv"
CV_TABLE = "cv.csv"
CV_ROWS = "cv.json"
POSTPROCESSING = "postprocessing.json"
LEGACY_POSTPROCESSING = "ensemble.json"  # its name in runs made before 2026-12
TEST_PREDICTIONS = "test_predictions.csv"
PORTFOLIO = "portfolio.json"  # the auto recipe's plan, members, scores and weights: marks a portfolio run
GATHERED = "gathered.json"  # a run gathered from a kernel group: the group's slug, configuration and split
FINAL_OOF = "oof_predictions.csv"  # the out-of-fold predictions of what was submitted, before clipping
REPORT_PAGE = "report.html"
REPORT_DIR = "report"
TENSORBOARD_DIR = "tensorboard"
BACKUP_DIR = "backup"
FOLD_PREFIX = "fold-"
REFIT_PREFIX = "refit-"
FILE_NAMES = (  # a fitness test fails when a module outside this one spells any of these
    STATE,
    METRICS,
    MODEL,
    HISTORY,
    VALIDATION,
    OOF,
    CV_TABLE,
    CV_ROWS,
    POSTPROCESSING,
    LEGACY_POSTPROCESSING,
    TEST_PREDICTIONS,
    PORTFOLIO,
    GATHERED,
    FINAL_OOF,
    REPORT_PAGE,
    "head.weights.h5",
    "fine.weights.h5",
)


def _write_json(path: Path, value: Any) -> Path:
    return write_text(path, json.dumps(value, indent=2) + "\n")


def _write_csv(path: Path, frame: pd.DataFrame) -> Path:
    return write_atomically(path, lambda p: frame.to_csv(p, index=False))


@dataclass(frozen=True)
class PostProcessing:
    """How `predict` turned a run's members and views into one prediction, chosen on out-of-fold data."""

    views: list[str]
    average: str  # "probability" or "logit"
    folds: int
    oof_single_view: dict[str, float]  # scores of one view of every member
    oof_with_tta: dict[str, float]  # scores after averaging the views
    clip: float | None = None  # probability submissions: the clip value and the scores after it
    oof_with_tta_and_clip: dict[str, float] | None = None
    threshold: float | None = None  # two-class hard labels: the cut and the scores at it
    oof_accuracy_at_threshold: float | None = None
    oof_with_threshold: dict[str, float] | None = None
    cut_points: list[float] | None = None  # ordered classes (QWK): cuts on the expected class
    oof_with_cut_points: dict[str, float] | None = None
    temperature: float | None = None  # many classes: the temperature and the scores after it
    oof_with_tta_and_temperature: dict[str, float] | None = None
    oof_log_loss_by_space: dict[str, float] = field(default_factory=dict)
    models: list[str] = field(default_factory=list)  # the members whose test predictions were averaged

    def cv_score(self, metric: str) -> float:
        """The run's out-of-fold score in `metric` after every post-processing step."""
        if metric == "log_loss":
            final = self.oof_with_tta_and_clip or self.oof_with_tta_and_temperature or self.oof_with_tta
            return final["log_loss"]
        for chosen in (self.oof_with_cut_points, self.oof_with_threshold):
            if chosen and metric in chosen:
                return chosen[metric]
        if metric == "accuracy" and self.oof_accuracy_at_threshold is not None:  # saved before the others
            return self.oof_accuracy_at_threshold
        final = self.oof_with_tta_and_temperature or self.oof_with_tta
        return final[metric]


class Run:
    """One run folder (a k-fold run, one of its folds, or a holdout run) and its files."""

    def __init__(self, path: Path | str):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Run) and other.path == self.path

    def __hash__(self) -> int:
        return hash(self.path)

    @property
    def name(self) -> str:
        """The folder's name: the run's name, or fold-<k>."""
        return self.path.name

    # --- members and state ------------------------------------------------------------------
    def fold(self, k: int) -> Run:
        """The member run of fold k: <run>/fold-<k>/."""
        return Run(self.path / f"{FOLD_PREFIX}{k}")

    def refit(self, k: int) -> Run:
        """The k-th model refit on all the training images: <run>/refit-<k>/."""
        return Run(self.path / f"{REFIT_PREFIX}{k}")

    def refit_members(self) -> list[Run]:
        """The finished refit models, in order."""
        found = [Run(d) for d in self.path.glob(f"{REFIT_PREFIX}*") if (d / METRICS).is_file()]
        return sorted(found, key=lambda r: int(r.name.removeprefix(REFIT_PREFIX)))

    @property
    def has_validation(self) -> bool:
        """True for a member trained with validation images (a refit model has none)."""
        return (self.path / VALIDATION).is_file()

    def members(self) -> list[Run]:
        """The finished models of this run: its finished folds in order, or itself if it is one."""
        folds = [Run(d) for d in self.path.glob(f"{FOLD_PREFIX}*") if (d / METRICS).is_file()]
        if folds:
            return sorted(folds, key=lambda r: int(r.name.removeprefix(FOLD_PREFIX)))
        return [self] if self.is_finished else []

    @property
    def is_finished(self) -> bool:
        """True once this member's metrics are written (its last file)."""
        return (self.path / METRICS).is_file()

    @property
    def has_finished_models(self) -> bool:
        """True when at least one member is finished, or a finished portfolio (a run `predict` can use)."""
        return bool(self.members()) or self.is_portfolio

    @property
    def is_portfolio(self) -> bool:
        """True for a finished portfolio of the auto recipe: its ensemble's test predictions are saved."""
        return (self.path / PORTFOLIO).is_file() and (self.path / TEST_PREDICTIONS).is_file()

    def finished_at(self) -> float:
        """When its newest member finished (seconds since the epoch)."""
        if not self.members():
            return (self.path / PORTFOLIO).stat().st_mtime
        return max((m.path / METRICS).stat().st_mtime for m in self.members())

    def read_portfolio(self) -> dict[str, Any] | None:
        """The auto recipe's record (plan, members with OOF score, seconds, weight), if any."""
        path = self.path / PORTFOLIO
        return json.loads(path.read_text()) if path.is_file() else None

    def portfolio_line(self) -> str:
        """The portfolio's members in one line (kept ones with their weight, others with their
        status), for the ledger and Kaggle's submission description; '' for other runs."""
        record = self.read_portfolio()
        if record is None:
            return ""
        parts = [
            f"{m['name']} x {m.get('weight', 0):.2f}"
            if m.get("kept")
            else f"{m['name']} {m.get('status', '')}".strip()
            for m in record.get("members", [])
        ]
        nested = record.get("nested_oof")
        shown = f"; nested {record.get('selected_on', '')} {nested:.4f}" if isinstance(nested, float) else ""
        return "portfolio: " + ", ".join(parts) + shown

    def write_portfolio(self, record: dict[str, Any]) -> Path:
        """Save the auto recipe's record, whole."""
        return _write_json(self.path / PORTFOLIO, record)

    def read_group(self) -> dict[str, Any] | None:
        """The kernel group this run's folds were gathered from (slug, configuration, split), if any."""
        path = self.path / GATHERED
        return json.loads(path.read_text()) if path.is_file() else None

    def write_group(self, record: dict[str, Any]) -> Path:
        """Mark the run as gathered from a kernel group, whole."""
        return _write_json(self.path / GATHERED, record)

    def state(self) -> str:
        """'in use' while a command holds the folder, else 'finished' or 'unfinished'."""
        if self.path.is_dir() and is_held(self.path):
            return "in use"
        return "finished" if self.has_finished_models else "unfinished"

    # --- configuration, phases and resume --------------------------------------------------
    def save_config(self, config: Config) -> None:
        """Save the resolved configuration beside the outputs."""
        config.save(self.path)

    def read_config(self) -> dict[str, Any]:
        """The saved configuration, as nested dictionaries."""
        return json.loads((self.path / CONFIG).read_text())

    def trained_config(self) -> dict[str, Any] | None:
        """The configuration the run's models were trained with: its own, else its first member's;
        None for a run that saved none."""
        for run in (self, *self.members(), *self.refit_members()):
            if (run.path / CONFIG).is_file():
                return run.read_config()
        return None

    @property
    def config_path(self) -> Path:
        """config.json, for messages and `--config`."""
        return self.path / CONFIG

    def read_state(self) -> dict[str, int]:
        """The phases finished so far and the epoch each reached."""
        path = self.path / STATE
        return json.loads(path.read_text()) if path.is_file() else {}

    def write_state(self, state: dict[str, int]) -> None:
        """Record the phases finished so far."""
        _write_json(self.path / STATE, state)

    def weights_path(self, phase: str) -> Path:
        """<phase>.weights.h5: the weights at the end of a phase."""
        return self.path / f"{phase}.weights.h5"

    def backup_dir(self, phase: str) -> Path:
        """backup/<phase>/: the checkpoint of an unfinished phase (BackupAndRestore)."""
        return self.path / BACKUP_DIR / phase

    def phase_history_path(self, phase: str) -> Path:
        """history-<phase>.csv: the CSVLogger file of one phase."""
        return self.path / f"history-{phase}.csv"

    def read_phase_history(self, phase: str) -> pd.DataFrame:
        """One phase's epochs (the last of any repeated epoch, after a resume); empty if none."""
        path = self.phase_history_path(phase)
        if not path.is_file():
            return pd.DataFrame()
        return pd.read_csv(path).drop_duplicates("epoch", keep="last").reset_index(drop=True)

    @property
    def tensorboard_dir(self) -> Path:
        """tensorboard/: logs for `tensorboard --logdir runs`."""
        return self.path / TENSORBOARD_DIR

    # --- a finished member -----------------------------------------------------------------
    @property
    def model_path(self) -> Path:
        """model.keras: the trained classifier."""
        return self.path / MODEL

    def write_history(self, history: pd.DataFrame) -> None:
        """Both phases' epochs in one table."""
        _write_csv(self.path / HISTORY, history)

    def read_history(self) -> pd.DataFrame | None:
        """Both phases' epochs, or None when the member has none."""
        path = self.path / HISTORY
        return pd.read_csv(path) if path.is_file() else None

    def write_validation(self, frame: pd.DataFrame) -> None:
        """id, label, probability of the validation images."""
        _write_csv(self.path / VALIDATION, frame)

    def read_validation(self) -> pd.DataFrame:
        """id, label, probability of the validation images (ids as text)."""
        return read_id_csv(self.path / VALIDATION)

    def write_metrics(self, metrics: dict[str, float]) -> None:
        """The validation scores; written last, it marks the member finished."""
        _write_json(self.path / METRICS, metrics)

    def read_metrics(self) -> dict[str, float]:
        """The validation scores (and `seconds` of training)."""
        return json.loads((self.path / METRICS).read_text())

    def tta_cache(self, views: list[str]) -> Path:
        """tta-<views>.npz: validation and test predictions of this member under `views`."""
        return self.path / f"tta-{'+'.join(views)}.npz"

    # --- a whole run -----------------------------------------------------------------------
    def write_cross_validation(self, oof: pd.DataFrame, rows: list[dict[str, Any]]) -> None:
        """The out-of-fold predictions and the score table (one row a fold, then 'all')."""
        _write_csv(self.path / OOF, oof)
        _write_csv(self.path / CV_TABLE, pd.DataFrame(rows))
        _write_json(self.path / CV_ROWS, rows)

    def read_oof(self) -> pd.DataFrame | None:
        """id, label, fold, probability of every out-of-fold prediction; None for a holdout run."""
        path = self.path / OOF
        return read_id_csv(path) if path.is_file() else None

    def read_cv_table(self) -> pd.DataFrame | None:
        """Scores per fold and overall ('all'); None for a holdout run."""
        path = self.path / CV_TABLE
        return pd.read_csv(path) if path.is_file() else None

    def write_postprocessing(self, chosen: PostProcessing) -> None:
        """How predict combined the members (read back by report, submit and the benchmarks)."""
        _write_json(self.path / POSTPROCESSING, {"run": self.name, **chosen.__dict__})
        (self.path / LEGACY_POSTPROCESSING).unlink(missing_ok=True)

    def read_postprocessing(self) -> PostProcessing | None:
        """What predict chose, or None when predict has not run on this run."""
        for name in (POSTPROCESSING, LEGACY_POSTPROCESSING):
            path = self.path / name
            if path.is_file():
                saved = json.loads(path.read_text())
                known = PostProcessing.__dataclass_fields__
                return PostProcessing(**{k: v for k, v in saved.items() if k in known})
        return None

    def write_final_oof(self, frame: pd.DataFrame) -> None:
        """id, label, probability: the out-of-fold predictions combined as the test predictions
        were (views averaged, a blend's weights), before clipping: what `blend` fits weights on."""
        _write_csv(self.path / FINAL_OOF, frame)

    @property
    def has_predictions(self) -> bool:
        """True once predict (or stack, or blend) left out-of-fold and test predictions here."""
        return (self.path / FINAL_OOF).is_file() and (self.path / TEST_PREDICTIONS).is_file()

    def read_final_oof(self) -> pd.DataFrame | None:
        """What `write_final_oof` saved, or None when predict (or stack, or blend) has not run."""
        path = self.path / FINAL_OOF
        return read_id_csv(path) if path.is_file() else None

    def read_test_predictions(self) -> pd.DataFrame | None:
        """id, probability (and label) of every test image, or None before predict has run."""
        path = self.path / TEST_PREDICTIONS
        return read_id_csv(path) if path.is_file() else None

    def write_test_predictions(self, frame: pd.DataFrame) -> None:
        """id, probability (and hard label) of every test image, post-processed."""
        _write_csv(self.path / TEST_PREDICTIONS, frame)

    @property
    def report_page(self) -> Path:
        """report.html."""
        return self.path / REPORT_PAGE

    @property
    def report_dir(self) -> Path:
        """report/: the page's pictures."""
        return self.path / REPORT_DIR

    def report_draft_dir(self) -> Path:
        """An empty folder for the pictures of a report being built (published by `publish_report`)."""
        draft = self.path / f".{REPORT_DIR}.partial"
        shutil.rmtree(draft, ignore_errors=True)
        draft.mkdir(parents=True)
        return draft

    def publish_report(self, page: str) -> Path:
        """Replace report/ by the draft's pictures (none of an earlier report's left behind), then
        write report.html; return the page's path."""
        shutil.rmtree(self.report_dir, ignore_errors=True)
        os.replace(self.path / f".{REPORT_DIR}.partial", self.report_dir)
        return write_text(self.report_page, page)

    def cv_score(self, metric: str) -> float | None:
        """The run's post-processed out-of-fold (holdout: validation) score, once predict has run."""
        chosen = self.read_postprocessing()
        return None if chosen is None else chosen.cv_score(metric)
