"""Weighted average of probabilities, the weights minimising out-of-fold log loss (scipy's SLSQP:
non-negative, summing to 1). For log-loss competitions: smooth, so it is solved, not searched."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

from pipeline.infer.ensembles.base import weighted_mean
from pipeline.metrics import EPSILON, Metric


@dataclass(frozen=True)
class Weighted:
    name: str = "weighted"

    def fit(self, oof: np.ndarray, labels: np.ndarray, metric: Metric) -> np.ndarray:
        """The weights of least out-of-fold log loss (whatever `metric`: log loss is its proxy)."""
        p = np.clip(np.asarray(oof, dtype=np.float64), EPSILON, 1 - EPSILON)
        y = np.asarray(labels, dtype=np.float64)
        if p.ndim == 3:  # each member's probability of the true class: the loss needs no other
            p = p[:, np.arange(p.shape[1]), y.astype(int)]
            y = np.ones_like(y)

        def loss(w: np.ndarray) -> float:
            q = np.clip(w @ p, EPSILON, 1 - EPSILON)
            return float(-np.mean(y * np.log(q) + (1 - y) * np.log1p(-q)))

        n = len(p)
        found = minimize(
            loss,
            np.full(n, 1.0 / n),
            method="SLSQP",
            bounds=[(0.0, 1.0)] * n,
            constraints=({"type": "eq", "fun": lambda w: w.sum() - 1.0},),
        )
        weights = np.clip(found.x, 0.0, None)
        return weights / weights.sum()

    def combine(self, predictions: np.ndarray, weights: np.ndarray) -> np.ndarray:
        return weighted_mean(predictions, weights)


METHOD = Weighted()
