"""Metrics and ensemble methods as plug-ins: every registered one runs through post-processing,
a blend and the sandbox's scoring; choices follow the competition's metric."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score, roc_auc_score

from pipeline.competitions import get_competition
from pipeline.config import load_config
from pipeline.demo.sandbox import _score
from pipeline.infer.blend import blend, find_runs
from pipeline.infer.ensembles import get_method
from pipeline.infer.postprocess import choose_threshold, post_process
from pipeline.metrics import METRICS
from pipeline.registry import ENSEMBLES
from pipeline.run import Run

BINARY = get_competition("dogs-vs-cats-redux-kernels-edition")
MANY = get_competition("shapes-demo")


def competition_for(metric: str, classes: int):
    """A table of the built-in layouts scored by `metric`, with a submission kind that fits it."""
    entry = METRICS[metric]
    base = BINARY if classes == 2 else MANY
    kind = "label" if entry.scores == "labels" else "probability" if classes == 2 else "class_probabilities"
    return dataclasses.replace(base, slug="plugin-probe", metric=metric, submission_kind=kind)


def predictions(classes: int, images: int, seed: int, sharpness: float) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.arange(images) % classes
    logits = rng.normal(0, 1, (images, classes)) + sharpness * np.eye(classes)[labels]
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return labels, (p[:, 1] if classes == 2 else p)


def predicted_run(folder: Path, slug: str, oof: np.ndarray, labels: np.ndarray, test: np.ndarray) -> Run:
    from pipeline.fit.metrics import as_columns

    run = Run(folder)
    run.save_config(load_config(overrides={"competition": slug}, environ={}))
    ids = [str(i) for i in range(len(labels))]
    run.write_final_oof(pd.DataFrame({"id": ids, "label": labels, **as_columns(oof)}))
    run.write_test_predictions(pd.DataFrame({"id": [str(i) for i in range(len(test))], **as_columns(test)}))
    return run


CASES = [(name, 2) for name, m in METRICS.items() if m.binary] + [
    (name, 4) for name, m in METRICS.items() if m.many
]


@pytest.mark.parametrize(("metric", "classes"), CASES)
def test_every_metric_runs_through_post_processing_and_scoring(metric: str, classes: int) -> None:
    competition = competition_for(metric, classes)
    labels, oof = predictions(classes, 240, 0, 2.0)
    chosen, columns = post_process(
        competition.submission_kind,
        oof,
        labels,
        oof[:20],
        metric=metric,
        views=[],
        average="probability",
        folds=2,
    )
    score = chosen.cv_score(metric)
    assert np.isfinite(score)
    values = oof[:20] if METRICS[metric].scores == "probabilities" else columns["label"].astype(float)
    assert np.isfinite(_score(metric, labels[:20], np.asarray(values)))


@pytest.mark.parametrize("method", list(ENSEMBLES))
@pytest.mark.parametrize("classes", [2, 4])
def test_every_ensemble_method_blends_runs(tmp_path: Path, method: str, classes: int) -> None:
    slug = BINARY.slug if classes == 2 else MANY.slug
    labels, good = predictions(classes, 300, 1, 3.0)
    _, weak = predictions(classes, 300, 2, 0.5)
    root = tmp_path / "runs" / slug
    predicted_run(root / "good", slug, good, labels, good[:30])
    predicted_run(root / "weak", slug, weak, labels, weak[:30])
    values = {"competition": slug, "paths.runs_root": str(tmp_path / "runs"), "blend.method": method}
    config = load_config(overrides=values, environ={})
    competition = get_competition(slug) if classes == 2 else MANY
    result = blend(config, competition, find_runs(config, ["good", "weak"]))
    assert sum(result.weights.values()) == pytest.approx(1.0)
    assert result.weights["good"] >= result.weights["weak"]
    assert len(result.test) == 30


def test_the_threshold_of_an_f1_competition_maximises_f1_not_accuracy() -> None:
    rng = np.random.default_rng(3)
    labels = (rng.uniform(size=2000) < 0.1).astype(int)  # a rare positive class
    p = 1 / (1 + np.exp(-(1.5 * labels + rng.normal(0, 1, 2000) - 1.5)))
    f1 = get_competition("dogs-vs-cats")  # hard labels
    f1 = dataclasses.replace(f1, metric="f1")
    chosen, columns = post_process(
        f1.submission_kind, p, labels, p, metric="f1", views=[], average="probability", folds=2
    )
    grid = np.round(np.arange(0.05, 0.96, 0.01), 2)
    best = max(f1_score(labels, (p >= t).astype(int)) for t in grid)
    assert chosen.cv_score("f1") == pytest.approx(best)
    accuracy_cut, _ = choose_threshold(p, labels)  # what it chose before metrics were plug-ins
    assert chosen.threshold != accuracy_cut
    assert f1_score(labels, columns["label"]) > f1_score(labels, (p >= accuracy_cut).astype(int))


def test_the_blend_weights_of_an_auc_competition_are_chosen_on_auc(tmp_path: Path) -> None:
    slug = "aerial-cactus-identification"  # scored by ROC AUC
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 2, 600)
    ranking = labels + rng.normal(0, 0.5, 600)
    ranker = 1 / (1 + np.exp(-20 * (ranking - 0.5)))  # orders the images well, confidently wrong at times
    calibrated = np.clip(0.5 + (labels - 0.5) * 0.3 + rng.normal(0, 0.25, 600), 0.02, 0.98)
    root = tmp_path / "runs" / slug
    predicted_run(root / "ranker", slug, ranker, labels, ranker[:20])
    predicted_run(root / "calibrated", slug, calibrated, labels, calibrated[:20])
    assert roc_auc_score(labels, ranker) > roc_auc_score(labels, calibrated)
    both = np.stack([ranker, calibrated])
    on_log_loss = get_method("weighted")
    weights = on_log_loss.fit(both, labels, METRICS["log_loss"])
    by_log_loss = roc_auc_score(labels, on_log_loss.combine(both, weights))
    config = load_config(
        overrides={"competition": slug, "paths.runs_root": str(tmp_path / "runs")}, environ={}
    )
    result = blend(config, get_competition(slug), find_runs(config, ["ranker", "calibrated"]))
    blended = result.postprocessing.cv_score("roc_auc")
    assert blended > by_log_loss and blended >= roc_auc_score(labels, ranker)
