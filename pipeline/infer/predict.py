"""Predict the test set with a finished run: every member model (the folds of a k-fold run, or
the one model of a holdout run) under every TTA view, averaged, then post-processed.

Each member also predicts its own validation images under the same views, so the averaging
space, the clip value (log-loss competitions) and the threshold (accuracy competitions) are all
chosen on out-of-fold (holdout: validation) predictions, never on the test set.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline.acquire.index import ImageIndex
from pipeline.atomic import write_atomically
from pipeline.competitions import Competition
from pipeline.config import Config
from pipeline.data.input_pipeline import make_dataset
from pipeline.fit.metrics import as_columns, scores
from pipeline.infer.postprocess import average, choose_space, post_process
from pipeline.infer.tta import parse_views, predict_views
from pipeline.layout import NoModelsError
from pipeline.model.classifier import load_trained_model
from pipeline.model.families import family_of
from pipeline.registry import get_backbone
from pipeline.run import PostProcessing, Run


@dataclass(frozen=True)
class Prediction:
    """Test predictions of a run's members under every view, and how they were combined."""

    run: Run
    test: pd.DataFrame  # id, probability (p0, p1, ... for many classes; post-processed), label (hard)
    postprocessing: PostProcessing


def _images(frame: pd.DataFrame, config: Config) -> object:
    return make_dataset(frame[["path"]], config, training=False)


def member_predictions(
    member: Run, index: ImageIndex, config: Config, views: list[str]
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """(validation rows, validation views x images, test views x images) of one member model; cached.
    A refit model has no validation images: no rows, (views, 0) predictions."""
    validation = member.read_validation() if member.has_validation else pd.DataFrame({"id": [], "label": []})
    cache = member.tta_cache(views)
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
    model = load_trained_model(member.model_path)
    validation_views = np.zeros((len(views), 0))
    if len(validation):
        by_id = index.train.set_index(index.train["id"].astype(str))
        validation_images = by_id.loc[validation["id"]].reset_index(drop=True)
        validation_views = predict_views(model, _images(validation_images, config), views)
    test_views = predict_views(model, _images(index.test, config), views)
    write_atomically(cache, lambda path: np.savez(path, validation=validation_views, test=test_views))
    return validation, validation_views, test_views


def cache_member_predictions(config: Config, index: ImageIndex, run: Run) -> list[Run]:
    """Predict with every finished model of `run` under the TTA views, each cached in its folder, without
    combining them (a shard's folds: `predict` combines them once the group is gathered); return them."""
    family_of(get_backbone(config.model.backbone))  # its layers registered: the saved models load
    members = [*run.members(), *run.refit_members()]
    views = parse_views(config.predict.tta)
    for member in members:
        member_predictions(member, index, config, views)
    print(f"Test predictions of {', '.join(m.name for m in members)} x {len(views)} view(s) cached")
    return members


def predict_run(config: Config, competition: Competition, index: ImageIndex, run: Run) -> Prediction:
    """Average every member model of `run` under every view, post-process on its validation
    predictions, and save the test predictions and the post-processing choices in the run."""
    family_of(get_backbone(config.model.backbone))  # its layers registered: the saved models load
    members, refits = run.members(), run.refit_members()
    if not members:
        raise NoModelsError(f"{run.path} has no finished model: train it first.")
    ensemble = config.predict.ensemble
    if ensemble == "refit" and not refits:
        raise NoModelsError(
            f"predict.ensemble = refit, but {run.path} has no refit model: train it with --refit 1 (or "
            "more), or predict with --ensemble folds"
        )
    averaged = {"all": members + refits, "folds": members, "refit": refits}[ensemble]
    views = parse_views(config.predict.tta)
    print(
        f"Predicting {len(index.test):,} test images with run {run.name}: "
        f"{len(averaged)} model(s) ({', '.join(m.name for m in averaged)}) x {len(views)} view(s)"
    )
    oof_parts, test_members = [], []
    for member in members:  # the out-of-fold predictions choose the post-processing
        validation, validation_views, test_views = member_predictions(member, index, config, views)
        oof_parts.append((validation, validation_views))
        if member in averaged:
            test_members.append(test_views)
    for member in refits:
        if member in averaged:
            test_members.append(member_predictions(member, index, config, views)[2])
    labels = np.concatenate([v["label"].to_numpy() for v, _ in oof_parts])
    oof_views = np.concatenate([views_ for _, views_ in oof_parts], axis=1)  # (views, oof images)
    space, space_losses = choose_space(oof_views, labels)
    if config.predict.average != "auto":
        space = config.predict.average
    oof = average(oof_views, space)
    test = average(np.concatenate(test_members), space)  # (folds x views, test images) -> test images
    chosen, columns = post_process(
        competition.submission_kind,
        oof,
        labels,
        test,
        views=views,
        average=space,
        folds=len(members),
        metric=competition.metric,
        oof_single_view=scores(labels, oof_views[0]),
        oof_log_loss_by_space=space_losses,
        models=[m.name for m in averaged],
    )
    frame = pd.DataFrame({"id": index.test["id"].astype(str).to_numpy(), **columns})
    step = (
        f"clip={chosen.clip}"
        if chosen.clip is not None
        else f"temperature={chosen.temperature}"
        if chosen.temperature is not None
        else f"threshold={chosen.threshold}"
    )
    oof_ids = np.concatenate([v["id"].astype(str).to_numpy() for v, _ in oof_parts])
    run.write_final_oof(pd.DataFrame({"id": oof_ids, "label": labels, **as_columns(oof)}))
    run.write_test_predictions(frame)
    run.write_postprocessing(chosen)
    print(f"Post-processing: {space} averaging; {step}")
    print("OOF with TTA: " + ", ".join(f"{k} {v:.4f}" for k, v in chosen.oof_with_tta.items()))
    return Prediction(run, frame, chosen)
