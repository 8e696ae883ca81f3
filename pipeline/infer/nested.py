"""An honest score for an ensemble whose weights are fit on out-of-fold predictions: the weights
used on each fold's images are fit on the other folds' images only (nested cross-validation), so
no image helps choose the weights it is scored with. The plain OOF score of the same ensemble is
optimistic; the gap between the two is how much the weights learned the noise."""

from __future__ import annotations

import numpy as np

from pipeline.infer.ensembles.base import EnsembleMethod
from pipeline.metrics import Metric


def nested_predictions(
    method: EnsembleMethod, oof: np.ndarray, labels: np.ndarray, folds: np.ndarray, metric: Metric
) -> np.ndarray:
    """The ensemble's out-of-fold predictions, each fold's combined with weights fit on the others'
    (`oof`: (members, images) or (members, images, classes); `folds`: each image's fold)."""
    combined = np.zeros(oof.shape[1:])
    for fold in np.unique(folds):
        inside, outside = folds != fold, folds == fold
        weights = method.fit(oof[:, inside], labels[inside], metric)
        combined[outside] = method.combine(oof[:, outside], weights)
    return combined


def nested_score(
    method: EnsembleMethod, oof: np.ndarray, labels: np.ndarray, folds: np.ndarray, metric: Metric
) -> float:
    """The metric of `nested_predictions` (one member: its own OOF score)."""
    if len(oof) == 1:
        return metric.of_probabilities(labels, oof[0])
    return metric.of_probabilities(labels, nested_predictions(method, oof, labels, folds, metric))


def per_image_log_loss(labels: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """Each image's log loss (P(positive), or (images, classes) probabilities), clipped as Kaggle does."""
    p = np.clip(np.asarray(probabilities, dtype=np.float64), 1e-15, 1 - 1e-15)
    labels = np.asarray(labels, dtype=int)
    if p.ndim == 1:
        return -np.where(labels == 1, np.log(p), np.log(1 - p))
    p = p / p.sum(axis=1, keepdims=True)
    return -np.log(p[np.arange(len(labels)), labels])


def clearly_lower(before: np.ndarray, after: np.ndarray) -> bool:
    """True when the per-image losses `after` are lower than `before` by more than one standard
    error of their paired difference: a gain the noise of these images does not explain."""
    gain = np.asarray(before) - np.asarray(after)
    return bool(gain.mean() > gain.std(ddof=1) / np.sqrt(len(gain)))
