"""Balanced accuracy: the mean of every class's recall (accuracy that small classes count in)."""

from __future__ import annotations

from sklearn.metrics import balanced_accuracy_score

from pipeline.metrics.base import Metric

METRIC = Metric(
    "balanced_accuracy",
    lambda labels, predicted: float(balanced_accuracy_score(labels, predicted)),
    higher_is_better=True,
    scores="labels",
    postprocessing="threshold",
)
