"""Quadratic weighted kappa of class indices: agreement on ordered classes (grades, severities)."""

from __future__ import annotations

from sklearn.metrics import cohen_kappa_score

from pipeline.metrics.base import Metric

METRIC = Metric(
    "qwk",
    lambda labels, predicted: float(cohen_kappa_score(labels, predicted, weights="quadratic")),
    higher_is_better=True,
    scores="labels",
    postprocessing="threshold",
    many_postprocessing="cut_points",
    binary=False,
)
