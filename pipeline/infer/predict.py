"""Predict the test set with a finished run: every member model (the folds of a k-fold run, or
the one model of a holdout run) under every TTA view, averaged, then post-processed.

Each member also predicts its own validation images under the same views, so the averaging
space, the clip value (log-loss competitions) and the threshold (accuracy competitions) are all
chosen on out-of-fold (holdout: validation) predictions, never on the test set.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from pipeline import layout
from pipeline.acquire.index import ImageIndex
from pipeline.competitions import Competition
from pipeline.config import Config
from pipeline.data.input_pipeline import make_dataset
from pipeline.fit.metrics import binary_scores
from pipeline.infer.postprocess import average, choose_clip, choose_space, choose_threshold, clip
from pipeline.infer.tta import parse_views, predict_views
from pipeline.model import classifier  # noqa: F401  (registers the custom layers that model.keras files use)


class NoModelsError(FileNotFoundError):
    """There is no finished run to predict with."""


@dataclass(frozen=True)
class Prediction:
    """Test predictions of a run's members under every view, and how they were combined."""

    run_dir: Path
    test: pd.DataFrame  # id, probability (post-processed), label (hard, for accuracy competitions)
    report: dict


def _images(frame: pd.DataFrame, config: Config) -> object:
    return make_dataset(frame[["path"]], config, training=False)


def member_predictions(
    fold_dir: Path, index: ImageIndex, config: Config, views: list[str]
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """(validation rows, validation views x images, test views x images) of one member model; cached."""
    validation = pd.read_csv(fold_dir / "validation_predictions.csv", dtype={"id": str})
    cache = fold_dir / f"tta-{'+'.join(views)}.npz"
    if cache.is_file():
        try:
            with np.load(cache) as saved:
                validation_views, test_views = saved["validation"], saved["test"]
            if test_views.shape[1] == len(index.test) and validation_views.shape[1] == len(validation):
                return validation, validation_views, test_views
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
            print(
                f"warning: discarding the damaged prediction cache {cache} ({type(error).__name__}); recomputing it"
            )
            cache.unlink()
    model = keras.saving.load_model(fold_dir / "model.keras")
    by_id = index.train.set_index(index.train["id"].astype(str))
    validation_images = by_id.loc[validation["id"]].reset_index(drop=True)
    validation_views = predict_views(model, _images(validation_images, config), views)
    test_views = predict_views(model, _images(index.test, config), views)
    partial = cache.with_name(cache.name + ".partial.npz")  # written whole, then renamed
    np.savez(partial, validation=validation_views, test=test_views)
    os.replace(partial, cache)
    return validation, validation_views, test_views


def find_run_or_explain(config: Config) -> Path:
    """The run to predict with (`predict.run`, else the newest finished one), or a NoModelsError
    that lists the finished runs and says what to do."""
    run_dir = layout.find_run(config)
    if run_dir is not None:
        return run_dir
    wanted = config.predict.run or f"{layout.run_name(config)} (k-fold) or {layout.run_name(config)}-holdout"
    others = layout.finished_runs(config)
    hint = f" Finished runs: {', '.join(others)} (choose one with --run NAME)." if others else ""
    raise NoModelsError(
        f"no finished run {wanted} in {layout.competition_runs(config)}: run `make train` "
        f"(or `python -m pipeline train --holdout`) first.{hint}"
    )


def predict_run(config: Config, competition: Competition, index: ImageIndex, run_dir: Path) -> Prediction:
    """Average every member model of `run_dir` under every view, post-process on its validation
    predictions, and save test_predictions.csv and ensemble.json in the run folder."""
    members = layout.member_dirs(run_dir)
    if not members:
        raise NoModelsError(f"{run_dir} has no finished model: train it first.")
    views = parse_views(config.predict.tta)
    print(
        f"Predicting {len(index.test):,} test images with run {run_dir.name}: "
        f"{len(members)} model(s) x {len(views)} view(s)"
    )
    oof_parts, test_members = [], []
    for member in members:
        validation, validation_views, test_views = member_predictions(member, index, config, views)
        oof_parts.append((validation, validation_views))
        test_members.append(test_views)
    labels = np.concatenate([v["label"].to_numpy() for v, _ in oof_parts])
    oof_views = np.concatenate([views_ for _, views_ in oof_parts], axis=1)  # (views, oof images)
    space, space_losses = choose_space(oof_views, labels)
    if config.predict.average != "auto":
        space = config.predict.average
    oof = average(oof_views, space)
    test = average(np.concatenate(test_members), space)  # (folds x views, test images) -> test images
    report: dict = {
        "run": run_dir.name,
        "folds": len(members),
        "views": views,
        "average": space,
        "oof_log_loss_by_space": space_losses,
        "oof_single_view": binary_scores(labels, oof_views[0]),
        "oof_with_tta": binary_scores(labels, oof),
    }
    frame = pd.DataFrame({"id": index.test["id"].astype(str).to_numpy()})
    if competition.submission_kind == "probability":
        c, loss = choose_clip(oof, labels)
        report["clip"] = c
        report["oof_with_tta_and_clip"] = {**binary_scores(labels, clip(oof, max(c, 1e-7))), "log_loss": loss}
        frame["probability"] = clip(test, c)
    else:
        threshold, accuracy = choose_threshold(oof, labels)
        report["threshold"] = threshold
        report["oof_accuracy_at_threshold"] = accuracy
        frame["probability"] = test
        frame["label"] = (test >= threshold).astype(int)
    frame.to_csv(run_dir / "test_predictions.csv", index=False)
    (run_dir / "ensemble.json").write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"Ensemble: {space} averaging; "
        + ", ".join(f"{k}={v}" for k, v in report.items() if k in ("clip", "threshold"))
    )
    print("OOF with TTA: " + ", ".join(f"{k} {v:.4f}" for k, v in report["oof_with_tta"].items()))
    return Prediction(run_dir, frame, report)
