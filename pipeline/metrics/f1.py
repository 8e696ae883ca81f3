"""F1: of the positive class for two classes; micro- or macro-averaged over many."""

from __future__ import annotations

from sklearn.metrics import f1_score

from pipeline.metrics.base import Metric

BINARY = Metric(
    "f1",
    lambda labels, predicted: float(f1_score(labels, predicted, zero_division=0)),
    higher_is_better=True,
    scores="labels",
    postprocessing="threshold",
    many=False,
)
MICRO = Metric(
    "f1_micro",
    lambda labels, predicted: float(f1_score(labels, predicted, average="micro")),
    higher_is_better=True,
    scores="labels",
    postprocessing="threshold",
    binary=False,
)
MACRO = Metric(
    "f1_macro",
    lambda labels, predicted: float(f1_score(labels, predicted, average="macro", zero_division=0)),
    higher_is_better=True,
    scores="labels",
    postprocessing="threshold",
    binary=False,
)
