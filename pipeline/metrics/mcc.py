"""Matthews correlation coefficient of hard labels (two classes or many)."""

from __future__ import annotations

from sklearn.metrics import matthews_corrcoef

from pipeline.metrics.base import Metric

METRIC = Metric(
    "mcc",
    lambda labels, predicted: float(matthews_corrcoef(labels, predicted)),
    higher_is_better=True,
    scores="labels",
    postprocessing="threshold",
)
