"""Scores of probability predictions: binary (P(positive), shape (images,)) or many classes (one
probability per class, shape (images, classes)). Every competition metric is a key of `scores`."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import (
    accuracy_score,
    cohen_kappa_score,
    f1_score,
    log_loss,
    matthews_corrcoef,
    roc_auc_score,
)

EPSILON = 1e-7
PROBABILITY = "probability"  # the column of P(positive) in two-class prediction tables


def probability_columns(num_classes: int) -> list[str]:
    """Columns of a prediction table: `probability` for two classes, `p0`, `p1`, ... for more."""
    return [PROBABILITY] if num_classes == 2 else [f"p{k}" for k in range(num_classes)]


def as_columns(probabilities: np.ndarray) -> dict[str, np.ndarray]:
    """A prediction array as the columns of a table (see `probability_columns`)."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.ndim == 1:
        return {PROBABILITY: probabilities}
    return {f"p{k}": probabilities[:, k] for k in range(probabilities.shape[1])}


def from_columns(frame: pd.DataFrame) -> np.ndarray:
    """The prediction array of a table written with `as_columns`."""
    if PROBABILITY in frame.columns:
        return frame[PROBABILITY].to_numpy(dtype=np.float64)
    count = sum(1 for c in frame.columns if c.startswith("p") and c[1:].isdigit())
    return frame[[f"p{k}" for k in range(count)]].to_numpy(dtype=np.float64)


def hard_labels(probabilities: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Class indices: P(positive) >= threshold for two classes, the most probable class for more."""
    probabilities = np.asarray(probabilities)
    if probabilities.ndim == 1:
        return (probabilities >= threshold).astype(int)
    return probabilities.argmax(axis=1)


def multiclass_log_loss(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """Kaggle's multi-class log loss: rows rescaled to sum to 1 after clipping."""
    p = np.clip(np.asarray(probabilities, dtype=np.float64), EPSILON, 1 - EPSILON)
    p = p / p.sum(axis=1, keepdims=True)
    return float(-np.mean(np.log(p[np.arange(len(p)), np.asarray(labels, dtype=int)])))


def _hard_scores(labels: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    return {
        "accuracy": float(accuracy_score(labels, predicted)),
        "f1_micro": float(f1_score(labels, predicted, average="micro")),
        "f1_macro": float(f1_score(labels, predicted, average="macro", zero_division=0)),
        "qwk": float(cohen_kappa_score(labels, predicted, weights="quadratic")),
    }


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


def multiclass_scores(labels: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    """Log loss, accuracy, micro/macro F1, quadratic weighted kappa and one-vs-rest ROC AUC (macro;
    NaN unless every class is present) of (images, classes) probabilities against class indices."""
    labels = np.asarray(labels).ravel().astype(int)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    classes = probabilities.shape[1]
    every_class = len(np.unique(labels)) == classes
    normalised = probabilities / np.clip(probabilities.sum(axis=1, keepdims=True), EPSILON, None)
    return {
        "log_loss": multiclass_log_loss(labels, probabilities),
        **_hard_scores(labels, probabilities.argmax(axis=1)),
        "roc_auc": float(roc_auc_score(labels, normalised, multi_class="ovr", labels=list(range(classes))))
        if every_class
        else float("nan"),
    }


def scores(labels: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    """`binary_scores` or `multiclass_scores`, by the shape of `probabilities`."""
    if np.asarray(probabilities).ndim == 1:
        return binary_scores(labels, probabilities)
    return multiclass_scores(labels, probabilities)
