"""ROC AUC of P(positive); one-vs-rest and macro-averaged for many classes."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score

from pipeline.metrics.base import Metric, both_classes_present, normalised


def score(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """The area under the ROC curve; NaN unless every class occurs in `labels`."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    classes = 2 if probabilities.ndim == 1 else probabilities.shape[1]
    if not both_classes_present(labels, classes):
        return float("nan")
    if probabilities.ndim == 1:
        return float(roc_auc_score(labels, probabilities))
    return float(
        roc_auc_score(labels, normalised(probabilities), multi_class="ovr", labels=list(range(classes)))
    )


METRIC = Metric(
    "roc_auc",
    score,
    higher_is_better=True,
    scores="probabilities",
    postprocessing="none",
    many_postprocessing="none",
    ensemble="rank",
)
