"""Scores of probability predictions: binary (P(positive), shape (images,)) or many classes (one
probability per class, shape (images, classes)). Every competition metric is a key of `scores`."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.metrics import METRICS

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


def scores(labels: np.ndarray, probabilities: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """Every registered metric that applies to the predictions' shape (two classes: P(positive) of
    shape (images,); many: (images, classes)); metrics of labels read P(positive) >= `threshold`, or
    the most probable class."""
    many = np.asarray(probabilities).ndim == 2
    return {
        name: metric.of_probabilities(labels, probabilities, threshold)
        for name, metric in METRICS.items()
        if (metric.many if many else metric.binary)
    }


def binary_scores(labels: np.ndarray, probabilities: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """`scores` of P(positive) against 0/1 labels."""
    return scores(np.asarray(labels).ravel(), np.asarray(probabilities, dtype=np.float64).ravel(), threshold)


def multiclass_scores(labels: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    """`scores` of (images, classes) probabilities against class indices."""
    return scores(labels, np.asarray(probabilities, dtype=np.float64))
