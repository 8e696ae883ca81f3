"""Scores of probability predictions for a binary competition."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, log_loss, matthews_corrcoef, roc_auc_score

EPSILON = 1e-7


def binary_scores(labels: np.ndarray, probabilities: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """Log loss, accuracy, MCC and ROC AUC of P(positive) against 0/1 labels."""
    labels = np.asarray(labels).ravel().astype(int)
    probabilities = np.clip(np.asarray(probabilities, dtype=np.float64).ravel(), EPSILON, 1 - EPSILON)
    predicted = (probabilities >= threshold).astype(int)
    both_classes = len(np.unique(labels)) == 2
    return {
        "log_loss": float(log_loss(labels, probabilities, labels=[0, 1])),
        "accuracy": float(accuracy_score(labels, predicted)),
        "mcc": float(matthews_corrcoef(labels, predicted)),
        "roc_auc": float(roc_auc_score(labels, probabilities)) if both_classes else float("nan"),
    }
