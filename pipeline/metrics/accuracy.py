"""Accuracy: the share of images whose class is right."""

from __future__ import annotations

from sklearn.metrics import accuracy_score

from pipeline.metrics.base import Metric

METRIC = Metric(
    "accuracy",
    lambda labels, predicted: float(accuracy_score(labels, predicted)),
    higher_is_better=True,
    scores="labels",
    postprocessing="threshold",
)
