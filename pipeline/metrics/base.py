"""What a competition metric is to the pipeline: a function, a direction, what it scores and the
post-processing it calls for. Each metric is one file beside this one and one line in METRICS."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

EPSILON = 1e-7  # probabilities are clipped to [EPSILON, 1 - EPSILON] before a log is taken

# The last step `predict` chooses on out-of-fold predictions for a metric:
POSTPROCESSING = (
    "clip",  # probabilities clipped to [c, 1 - c] (two classes); a temperature for many classes
    "threshold",  # two classes scored as labels: the cut that maximises the metric
    "cut_points",  # ordered classes: cut points on the expected class that maximise the metric
    "argmax",  # many classes scored as labels: the most probable class
    "none",  # the ranking is what counts (ROC AUC): nothing to choose
)


@dataclass(frozen=True)
class Metric:
    """One competition metric.

    `score(labels, predictions)`: labels are class indices; predictions are probabilities
    ((images,) of P(positive), or (images, classes)) when `scores` is "probabilities", class
    indices when it is "labels". Returns NaN where the metric is undefined (one class present).
    """

    name: str
    score: Callable[[np.ndarray, np.ndarray], float]
    higher_is_better: bool
    scores: str  # "probabilities" or "labels"
    postprocessing: str  # one of POSTPROCESSING for two classes
    many_postprocessing: str = "argmax"  # the same for more than two classes
    ensemble: str = "greedy"  # the `blend --method` that `auto` picks (pipeline.registry.ENSEMBLES)
    binary: bool = True  # defined for two classes
    many: bool = True  # defined for more than two classes

    def __post_init__(self) -> None:
        if self.scores not in ("probabilities", "labels"):
            raise ValueError(f"metric {self.name}: scores must be 'probabilities' or 'labels'")
        for step in (self.postprocessing, self.many_postprocessing):
            if step not in POSTPROCESSING:
                raise ValueError(
                    f"metric {self.name}: post-processing {step!r} is not one of {POSTPROCESSING}"
                )

    def better(self, first: float, second: float) -> bool:
        """True when `first` is a strictly better score than `second` (NaN is never better)."""
        if np.isnan(first):
            return False
        if np.isnan(second):
            return True
        return first > second if self.higher_is_better else first < second

    def of_probabilities(
        self, labels: np.ndarray, probabilities: np.ndarray, threshold: float = 0.5
    ) -> float:
        """The metric of probability predictions: as they are, or as hard labels (P(positive) >=
        `threshold` for two classes, the most probable class for more)."""
        probabilities = np.asarray(probabilities, dtype=np.float64)
        labels = np.asarray(labels).astype(int)
        if self.scores == "probabilities":
            return self.score(labels, probabilities)
        if probabilities.ndim == 1:
            return self.score(labels, (probabilities >= threshold).astype(int))
        return self.score(labels, probabilities.argmax(axis=1))


def normalised(probabilities: np.ndarray) -> np.ndarray:
    """(images, classes) probabilities clipped away from 0 and rescaled to sum to 1 per row, as
    Kaggle does before scoring."""
    p = np.clip(np.asarray(probabilities, dtype=np.float64), EPSILON, 1 - EPSILON)
    return p / p.sum(axis=1, keepdims=True)


def both_classes_present(labels: np.ndarray, classes: int) -> bool:
    """True when every class of `classes` occurs in `labels` (ROC AUC needs it)."""
    return len(np.unique(labels)) == classes
