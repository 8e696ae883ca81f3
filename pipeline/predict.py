"""Predict the test set with every fold model and every TTA view, then ensemble and post-process.

Each fold model also predicts its own validation fold under the same views, so the averaging
space, the clip value (log-loss competitions) and the threshold (accuracy competitions) are all
chosen on out-of-fold predictions, never on the test set.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from pipeline.competitions import Competition
from pipeline.config import Config
from pipeline.dataset import make_dataset
from pipeline.ensemble import average, choose_clip, choose_space, choose_threshold, clip
from pipeline.index import ImageIndex
from pipeline.kfold import ensemble_dir, fold_dirs
from pipeline.metrics import binary_scores
from pipeline.tta import parse_views, predict_views


class NoModelsError(FileNotFoundError):
    """There is no finished fold model to predict with."""


@dataclass(frozen=True)
class Ensemble:
    """Test predictions of the ensemble and how they were made."""

    run_dir: Path
    test: pd.DataFrame  # id, probability (post-processed), label (hard, for accuracy competitions)
    report: dict


def _images(frame: pd.DataFrame, config: Config) -> object:
    return make_dataset(frame[["path"]], config, training=False)


def fold_predictions(
    fold_dir: Path, index: ImageIndex, config: Config, views: list[str]
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """(validation rows, validation views x images, test views x images) of one fold model; cached."""
    validation = pd.read_csv(fold_dir / "validation_predictions.csv", dtype={"id": str})
    cache = fold_dir / f"tta-{'+'.join(views)}.npz"
    if cache.is_file():
        saved = np.load(cache)
        if saved["test"].shape[1] == len(index.test):
            return validation, saved["validation"], saved["test"]
    model = keras.saving.load_model(fold_dir / "model.keras")
    by_id = index.train.set_index(index.train["id"].astype(str))
    validation_images = by_id.loc[validation["id"]].reset_index(drop=True)
    validation_views = predict_views(model, _images(validation_images, config), views)
    test_views = predict_views(model, _images(index.test, config), views)
    np.savez(cache, validation=validation_views, test=test_views)
    return validation, validation_views, test_views


def predict_ensemble(config: Config, competition: Competition, index: ImageIndex) -> Ensemble:
    """Average every fold model under every view, post-process on OOF, save test_predictions.csv."""
    run_dir = ensemble_dir(config)
    folds = fold_dirs(run_dir)
    if not folds:
        raise NoModelsError(
            f"no finished fold models in {run_dir}: run `make train` (python -m pipeline train) first."
        )
    views = parse_views(config.predict.tta)
    print(
        f"Predicting {len(index.test):,} test images with {len(folds)} fold model(s) x {len(views)} view(s)"
    )
    oof_parts, test_members = [], []
    for fold_dir in folds:
        validation, validation_views, test_views = fold_predictions(fold_dir, index, config, views)
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
        "folds": len(folds),
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
    return Ensemble(run_dir, frame, report)
