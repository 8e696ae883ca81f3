"""What an ensemble method is: weights fit on out-of-fold predictions, and a way to combine."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from pipeline.metrics import Metric


class EnsembleMethod(Protocol):
    """Fits member weights on out-of-fold predictions and combines predictions with them.

    Predictions are (members, images) of P(positive), or (members, images, classes)."""

    name: str

    def fit(self, oof: np.ndarray, labels: np.ndarray, metric: Metric) -> np.ndarray:
        """Non-negative weights summing to 1, one per member, chosen on `oof` for `metric`."""
        ...

    def combine(self, predictions: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """The members' predictions as one (images[, classes]) prediction."""
        ...


def weighted_mean(predictions: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """sum_m w_m * predictions[m]."""
    return np.tensordot(
        np.asarray(weights, dtype=np.float64), np.asarray(predictions, dtype=np.float64), axes=1
    )


@dataclass(frozen=True)
class Selection:
    """Greedy forward selection with replacement (Caruana et al., 2004; Kaggle's "hill climbing"):
    start from the best member alone, then add, again and again, the member (repeats allowed) whose
    addition most improves the metric of the combined out-of-fold predictions; weights are how
    often each member was chosen."""

    rounds: int = 25  # additions at most; it stops earlier when no addition helps
    patience: int = 3  # additions in a row that may fail to improve before it stops

    def weights(self, oof: np.ndarray, labels: np.ndarray, metric: Metric, combine) -> np.ndarray:
        members = len(oof)
        counts = np.zeros(members)

        def score(trial: np.ndarray) -> float:
            return metric.of_probabilities(labels, combine(oof, trial / trial.sum()))

        alone = [score(np.eye(members)[m]) for m in range(members)]
        first = max(range(members), key=lambda m: alone[m] if metric.higher_is_better else -alone[m])
        counts[first] = 1
        best, best_counts, misses = alone[first], counts.copy(), 0
        for _ in range(self.rounds):
            trials = [counts + np.eye(members)[m] for m in range(members)]
            scored = [score(trial) for trial in trials]
            pick = max(range(members), key=lambda m: scored[m] if metric.higher_is_better else -scored[m])
            counts = trials[pick]
            if metric.better(scored[pick], best):
                best, best_counts, misses = scored[pick], counts.copy(), 0
            else:
                misses += 1
                if misses >= self.patience:
                    break
        return best_counts / best_counts.sum()


@dataclass(frozen=True)
class SelectedMean:
    """A weighted mean of the members' probabilities whose weights `Selection` chooses on the
    metric; a subclass changes `combine` (how weighted predictions are averaged)."""

    name: str = "greedy"
    selection: Selection = field(default_factory=Selection)

    def fit(self, oof: np.ndarray, labels: np.ndarray, metric: Metric) -> np.ndarray:
        return self.selection.weights(np.asarray(oof, dtype=np.float64), labels, metric, self.combine)

    def combine(self, predictions: np.ndarray, weights: np.ndarray) -> np.ndarray:
        return weighted_mean(predictions, weights)
