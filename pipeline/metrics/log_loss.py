"""Log loss (binary or multi-class cross-entropy; Kaggle rescales each row to sum to 1)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import log_loss as sklearn_log_loss

from pipeline.metrics.base import EPSILON, Metric, normalised


def score(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """Binary log loss of P(positive), or Kaggle's multi-class log loss of (images, classes)."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.ndim == 2:
        p = normalised(probabilities)
        return float(-np.mean(np.log(p[np.arange(len(p)), np.asarray(labels, dtype=int)])))
    return float(sklearn_log_loss(labels, np.clip(probabilities, EPSILON, 1 - EPSILON), labels=[0, 1]))


METRIC = Metric(
    "log_loss",
    score,
    higher_is_better=False,
    scores="probabilities",
    postprocessing="clip",
    many_postprocessing="clip",  # for many classes: temperature scaling
    ensemble="weighted",
)
