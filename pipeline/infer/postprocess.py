"""Combining predictions: averaging space, then clipping and threshold (two classes) or
temperature (many), each chosen on out-of-fold data.

Pure functions on arrays; nothing here touches a model or a file. Two-class predictions are
P(positive) per image, shape (..., images); many-class ones a probability per class, (..., images,
classes).
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, log_loss

from pipeline.fit.metrics import EPSILON, as_columns, binary_scores, multiclass_log_loss, multiclass_scores
from pipeline.run import PostProcessing

CLIP_CANDIDATES = (0.0, 1e-4, 3e-4, 1e-3, 3e-3, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1)
TEMPERATURES = tuple(float(t) for t in np.round(np.geomspace(0.25, 4.0, 41), 4))  # includes 1.0


def logit(p: np.ndarray) -> np.ndarray:
    """Log-odds of probabilities (clipped away from 0 and 1)."""
    p = np.clip(np.asarray(p, dtype=np.float64), EPSILON, 1 - EPSILON)
    return np.log(p) - np.log1p(-p)


def softmax(scores: np.ndarray) -> np.ndarray:
    """Probabilities over the last axis from unnormalised log-probabilities."""
    shifted = scores - scores.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def _log_probabilities(p: np.ndarray) -> np.ndarray:
    return np.log(np.clip(np.asarray(p, dtype=np.float64), EPSILON, 1.0))


def average(predictions: np.ndarray, space: str) -> np.ndarray:
    """Mean over the first axis of (members, images[, classes]) probabilities, in probability or
    logit space (many classes: the mean log-probability, normalised: a geometric mean)."""
    predictions = np.asarray(predictions, dtype=np.float64)
    if space == "probability":
        return predictions.mean(axis=0)
    if space == "logit":
        if predictions.ndim == 3:
            return softmax(_log_probabilities(predictions).mean(axis=0))
        return 1.0 / (1.0 + np.exp(-logit(predictions).mean(axis=0)))
    raise ValueError(f"unknown averaging space {space!r}: use 'probability' or 'logit'")


def prediction_log_loss(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """Binary or multi-class log loss, by the shape of `probabilities`."""
    if np.asarray(probabilities).ndim == 2:
        return multiclass_log_loss(labels, probabilities)
    return float(log_loss(labels, np.clip(probabilities, EPSILON, 1 - EPSILON), labels=[0, 1]))


def choose_space(predictions: np.ndarray, labels: np.ndarray) -> tuple[str, dict[str, float]]:
    """The averaging space with the lower log loss on out-of-fold (members, images[, classes])
    predictions."""
    losses = {
        space: prediction_log_loss(labels, average(predictions, space)) for space in ("probability", "logit")
    }
    return min(losses, key=losses.__getitem__), losses


def with_temperature(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """(images, classes) probabilities softened (T > 1) or sharpened (T < 1): softmax(log p / T)."""
    return softmax(_log_probabilities(probabilities) / temperature)


def choose_temperature(probabilities: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(T, out-of-fold log loss) of the temperature among TEMPERATURES that minimises the
    multi-class log loss (temperature scaling, Guo et al. 2017; ties: nearest 1)."""
    losses = {t: multiclass_log_loss(labels, with_temperature(probabilities, t)) for t in TEMPERATURES}
    best = min(losses, key=lambda t: (round(losses[t], 12), abs(np.log(t))))
    return best, losses[best]


def clip(probabilities: np.ndarray, c: float) -> np.ndarray:
    """Probabilities clipped to [c, 1 - c]: bounds the log-loss cost of a confident mistake."""
    return np.clip(np.asarray(probabilities, dtype=np.float64), c, 1 - c)


def choose_clip(probabilities: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(c, out-of-fold log loss) of the clip value among CLIP_CANDIDATES that minimises log loss."""
    scores = {
        c: float(log_loss(labels, clip(probabilities, max(c, EPSILON)), labels=[0, 1]))
        for c in CLIP_CANDIDATES
    }
    best = min(scores, key=scores.__getitem__)
    return best, scores[best]


def choose_threshold(probabilities: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(threshold, out-of-fold accuracy) of the cut that maximises accuracy (ties: nearest 0.5)."""
    candidates = np.round(np.arange(0.05, 0.96, 0.01), 2)
    accuracies = [accuracy_score(labels, (probabilities >= t).astype(int)) for t in candidates]
    best = max(range(len(candidates)), key=lambda i: (accuracies[i], -abs(candidates[i] - 0.5)))
    return float(candidates[best]), float(accuracies[best])


def post_process(
    submission_kind: str, oof: np.ndarray, labels: np.ndarray, test: np.ndarray, **common: object
) -> tuple[PostProcessing, dict[str, np.ndarray]]:
    """The last step, chosen on the out-of-fold predictions `oof`: a clip value for probability
    submissions, a threshold for hard labels (two classes); a temperature (many classes). Returns
    the choices (with `common`: views, average, folds, models, ...) and the test columns:
    probability (p0, p1, ... for many classes; post-processed) and label (hard)."""
    if np.asarray(oof).ndim == 2:
        return post_process_multiclass(oof, labels, test, **common)
    common = {
        "oof_single_view": binary_scores(labels, oof),
        **common,
        "oof_with_tta": binary_scores(labels, oof),
    }
    if submission_kind in ("probability", "class_probabilities"):  # scored as probabilities: clip
        c, loss = choose_clip(oof, labels)
        scores = {**binary_scores(labels, clip(oof, max(c, EPSILON))), "log_loss": loss}
        return PostProcessing(**common, clip=c, oof_with_tta_and_clip=scores), {"probability": clip(test, c)}
    threshold, accuracy = choose_threshold(oof, labels)
    chosen = PostProcessing(**common, threshold=threshold, oof_accuracy_at_threshold=accuracy)
    return chosen, {"probability": test, "label": (test >= threshold).astype(int)}


def post_process_multiclass(
    oof: np.ndarray, labels: np.ndarray, test: np.ndarray, **common: object
) -> tuple[PostProcessing, dict[str, np.ndarray]]:
    """Many classes: the temperature that minimises out-of-fold log loss, applied to the test
    predictions; hard labels are the most probable class (a temperature never changes it)."""
    temperature, _ = choose_temperature(oof, labels)
    averaged = multiclass_scores(labels, oof)
    chosen = PostProcessing(
        **{"oof_single_view": averaged, **common, "oof_with_tta": averaged},
        temperature=temperature,
        oof_with_tta_and_temperature=multiclass_scores(labels, with_temperature(oof, temperature)),
    )
    calibrated = with_temperature(test, temperature)
    return chosen, {**as_columns(calibrated), "label": calibrated.argmax(axis=1)}
