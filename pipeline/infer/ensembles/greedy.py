"""Greedy forward selection with replacement, scored with the competition's metric on out-of-fold
predictions (Caruana et al., 2004): for metrics of labels (accuracy, F1, QWK) that no optimiser can
differentiate."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pipeline.infer.ensembles.base import Selection, weighted_mean
from pipeline.metrics import Metric


@dataclass(frozen=True)
class Greedy:
    name: str = "greedy"
    selection: Selection = field(default_factory=Selection)

    def fit(self, oof: np.ndarray, labels: np.ndarray, metric: Metric) -> np.ndarray:
        return self.selection.weights(np.asarray(oof, dtype=np.float64), labels, metric, self.combine)

    def combine(self, predictions: np.ndarray, weights: np.ndarray) -> np.ndarray:
        return weighted_mean(predictions, weights)


METHOD = Greedy()
