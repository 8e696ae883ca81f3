"""Weighted geometric mean of probabilities (a weighted mean of log-odds for two classes, of
log-probabilities renormalised for many), the weights chosen by forward selection on the
metric: members that are confidently right pull harder than in an arithmetic mean."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special

from pipeline.infer.ensembles.base import SelectedMean
from pipeline.infer.postprocess import logit, softmax
from pipeline.metrics import EPSILON


@dataclass(frozen=True)
class Geometric(SelectedMean):
    name: str = "geometric"

    def combine(self, predictions: np.ndarray, weights: np.ndarray) -> np.ndarray:
        predictions = np.asarray(predictions, dtype=np.float64)
        weights = np.asarray(weights, dtype=np.float64)
        if predictions.ndim == 3:
            logs = np.log(np.clip(predictions, EPSILON, 1.0))
            return softmax(np.tensordot(weights, logs, axes=1))
        return special.expit(np.tensordot(weights, logit(predictions), axes=1))


METHOD = Geometric()
