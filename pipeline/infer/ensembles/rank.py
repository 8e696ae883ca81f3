"""Rank average: each member's predictions replaced by their ranks (scaled to [0, 1], per class
for many classes), then averaged with weights chosen greedily on the metric. For ROC AUC, which
only sees the order: members of different calibration count by their ranking alone."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata

from pipeline.infer.ensembles.base import SelectedMean, weighted_mean
from pipeline.metrics import Metric


def ranks(predictions: np.ndarray) -> np.ndarray:
    """(members, images[, classes]) predictions as ranks over the images, scaled to [0, 1]."""
    predictions = np.asarray(predictions, dtype=np.float64)
    ranked = rankdata(predictions, axis=1)
    return (ranked - 1) / max(predictions.shape[1] - 1, 1)


@dataclass(frozen=True)
class Rank(SelectedMean):
    name: str = "rank"

    def fit(self, oof: np.ndarray, labels: np.ndarray, metric: Metric) -> np.ndarray:
        ranked = ranks(oof)
        return self.selection.weights(ranked, labels, metric, weighted_mean)

    def combine(self, predictions: np.ndarray, weights: np.ndarray) -> np.ndarray:
        combined = weighted_mean(ranks(predictions), weights)
        if combined.ndim == 2:  # one score per class: rows that sum to 1, as a submission needs
            combined = combined / np.clip(combined.sum(axis=1, keepdims=True), 1e-12, None)
        return combined


METHOD = Rank()
