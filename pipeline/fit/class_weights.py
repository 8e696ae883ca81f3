"""Class weights against imbalance (`train.class_weight`): scikit-learn's "balanced" weights
(n_images / (n_classes x n_images of the class)), for Keras' `class_weight` and the stack's sample
weights."""

from __future__ import annotations

import numpy as np
from sklearn.utils.class_weight import compute_class_weight

IMBALANCE = (
    3.0  # auto weighs the classes when the largest has more than this many times the smallest's images
)


def class_weights(labels: np.ndarray, num_classes: int, mode: str) -> dict[int, float] | None:
    """{class index: weight} for `mode` (balanced, none, auto), or None when the classes weigh the
    same. A class absent from `labels` keeps weight 1."""
    counts = np.bincount(np.asarray(labels, dtype=int), minlength=num_classes)
    present = counts > 0
    if mode == "none" or present.sum() < 2:
        return None
    if mode == "auto" and counts[present].max() <= IMBALANCE * counts[present].min():
        return None
    classes = np.flatnonzero(present)
    weights = compute_class_weight("balanced", classes=classes, y=np.asarray(labels, dtype=int))
    found = dict(zip(classes.tolist(), weights.tolist(), strict=True))
    return {k: float(found.get(k, 1.0)) for k in range(num_classes)}


def sample_weights(labels: np.ndarray, weights: dict[int, float] | None) -> np.ndarray:
    """Each image's weight under `weights` (ones when None)."""
    labels = np.asarray(labels, dtype=int)
    if weights is None:
        return np.ones(len(labels))
    return np.array([weights[k] for k in labels], dtype=float)


def describe(weights: dict[int, float] | None, classes: list[str]) -> str:
    """One line naming the weights, for the log."""
    if weights is None:
        return "class weights: none (the classes are balanced enough)"
    shown = ", ".join(f"{classes[k]} {w:.2f}" for k, w in list(weights.items())[:12])
    return f"class weights (balanced): {shown}"
