"""Combining predictions: averaging space, then clipping and threshold (two classes) or
temperature (many), each chosen on out-of-fold data.

Pure functions on arrays; nothing here touches a model or a file. Two-class predictions are
P(positive) per image, shape (..., images); many-class ones a probability per class, (..., images,
classes).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import optimize, special

from pipeline.fit.metrics import as_columns, binary_scores, multiclass_scores
from pipeline.metrics import EPSILON, METRICS, Metric
from pipeline.run import PostProcessing

CLIP_CANDIDATES = (0.0, 1e-4, 3e-4, 1e-3, 3e-3, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1)
TEMPERATURE_RANGE = (0.25, 4.0)  # softened up to 4x, sharpened up to 4x


def logit(p: np.ndarray) -> np.ndarray:
    """Log-odds of probabilities (clipped away from 0 and 1): scipy.special.logit."""
    return special.logit(np.clip(np.asarray(p, dtype=np.float64), EPSILON, 1 - EPSILON))


def softmax(scores: np.ndarray) -> np.ndarray:
    """Probabilities over the last axis from unnormalised log-probabilities: scipy.special.softmax."""
    return special.softmax(scores, axis=-1)


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
        return special.expit(logit(predictions).mean(axis=0))
    raise ValueError(f"unknown averaging space {space!r}: use 'probability' or 'logit'")


def prediction_log_loss(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """Binary or multi-class log loss, by the shape of `probabilities`."""
    return METRICS["log_loss"].score(labels, probabilities)


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
    """(T, out-of-fold log loss) of the temperature in TEMPERATURE_RANGE that minimises the
    multi-class log loss (temperature scaling, Guo et al. 2017), found by scipy's bounded scalar
    minimisation over log T; T = 1 unless another is better."""

    def loss(log_t: float) -> float:
        return prediction_log_loss(labels, with_temperature(probabilities, float(np.exp(log_t))))

    low, high = np.log(TEMPERATURE_RANGE)
    found = optimize.minimize_scalar(loss, bounds=(low, high), method="bounded", options={"xatol": 1e-3})
    best = round(float(np.exp(found.x)), 4)
    untouched, tuned = loss(0.0), loss(np.log(best))
    return (1.0, untouched) if untouched <= tuned else (best, tuned)


def clip(probabilities: np.ndarray, c: float) -> np.ndarray:
    """Probabilities clipped to [c, 1 - c]: bounds the log-loss cost of a confident mistake."""
    return np.clip(np.asarray(probabilities, dtype=np.float64), c, 1 - c)


def choose_clip(probabilities: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(c, out-of-fold log loss) of the clip value among CLIP_CANDIDATES that minimises log loss."""
    scores = {c: prediction_log_loss(labels, clip(probabilities, max(c, EPSILON))) for c in CLIP_CANDIDATES}
    best = min(scores, key=scores.__getitem__)
    return best, scores[best]


def choose_threshold(
    probabilities: np.ndarray, labels: np.ndarray, metric: Metric = METRICS["accuracy"]
) -> tuple[float, float]:
    """(threshold, out-of-fold score) of the cut on P(positive) that gives `metric` (accuracy, F1,
    MCC...) its best out-of-fold score (ties: nearest 0.5)."""
    candidates = np.round(np.arange(0.05, 0.96, 0.01), 2)
    found = [metric.score(labels, (probabilities >= t).astype(int)) for t in candidates]
    signed = [s if metric.higher_is_better else -s for s in found]
    best = max(range(len(candidates)), key=lambda i: (signed[i], -abs(candidates[i] - 0.5)))
    return float(candidates[best]), float(found[best])


def expected_class(probabilities: np.ndarray) -> np.ndarray:
    """The expected class index of (images, classes) probabilities: sum_k k * p_k."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    return probabilities @ np.arange(probabilities.shape[1])


def with_cut_points(probabilities: np.ndarray, cuts: list[float]) -> np.ndarray:
    """Ordered classes from (images, classes) probabilities: the expected class, cut at `cuts`."""
    return np.digitize(expected_class(probabilities), cuts)


def choose_cut_points(
    probabilities: np.ndarray, labels: np.ndarray, metric: Metric, rounds: int = 3
) -> tuple[list[float] | None, float]:
    """(cut points, out-of-fold score) for ordered classes (QWK): the expected class index cut at
    k - 1 increasing points, each moved in turn to its best place on out-of-fold predictions
    (coordinate ascent from k + 0.5). None when the most probable class scores as well."""
    classes = np.asarray(probabilities).shape[1]
    argmax = metric.score(labels, np.asarray(probabilities).argmax(axis=1))
    cuts = list(np.arange(classes - 1) + 0.5)
    best = metric.score(labels, with_cut_points(probabilities, cuts))
    for _ in range(rounds):
        for i in range(len(cuts)):
            low = cuts[i - 1] if i else 0.0
            high = cuts[i + 1] if i + 1 < len(cuts) else classes - 1.0
            for candidate in np.linspace(low, high, 23)[1:-1]:
                trial = [*cuts[:i], float(candidate), *cuts[i + 1 :]]
                score = metric.score(labels, with_cut_points(probabilities, trial))
                if metric.better(score, best):
                    best, cuts = score, trial
    if not metric.better(best, argmax):
        return None, argmax
    return [round(c, 4) for c in cuts], best


def post_process(
    submission_kind: str,
    oof: np.ndarray,
    labels: np.ndarray,
    test: np.ndarray,
    *,
    metric: str,
    **common: object,
) -> tuple[PostProcessing, dict[str, np.ndarray]]:
    """The last step, chosen on the out-of-fold predictions `oof` for the competition's `metric`
    (its `postprocessing`): a clip value for log loss, nothing for ROC AUC (probability submissions);
    the threshold that maximises the metric for two-class labels; a temperature (many classes,
    log loss), cut points on the expected class (QWK). Returns the choices (with `common`: views,
    average, folds, models, ...) and the test columns: probability (p0, p1, ... for many classes;
    post-processed) and label (hard)."""
    entry = METRICS[metric]
    if np.asarray(oof).ndim == 2:
        return post_process_multiclass(submission_kind, entry, oof, labels, test, **common)
    common = {
        "oof_single_view": binary_scores(labels, oof),
        **common,
        "oof_with_tta": binary_scores(labels, oof),
    }
    if submission_kind in ("probability", "class_probabilities"):  # scored as probabilities
        if entry.postprocessing != "clip":  # the ranking is what counts: left as it is
            chosen = PostProcessing(**common)
            return chosen, apply_postprocessing(chosen, submission_kind, test)
        c, loss = choose_clip(oof, labels)
        scores = {**binary_scores(labels, clip(oof, max(c, EPSILON))), "log_loss": loss}
        chosen = PostProcessing(**common, clip=c, oof_with_tta_and_clip=scores)
        return chosen, apply_postprocessing(chosen, submission_kind, test)
    threshold, _ = choose_threshold(oof, labels, entry)
    at = binary_scores(labels, oof, threshold)
    chosen = PostProcessing(
        **common, threshold=threshold, oof_accuracy_at_threshold=at["accuracy"], oof_with_threshold=at
    )
    return chosen, apply_postprocessing(chosen, submission_kind, test)


def apply_postprocessing(
    chosen: PostProcessing, submission_kind: str, predictions: np.ndarray
) -> dict[str, np.ndarray]:
    """What `chosen` does to averaged predictions (the test set's, or any image's): the columns
    probability (p0, p1, ... for many classes) and label. One implementation for predict, its
    submission and `classify`."""
    predictions = np.asarray(predictions, dtype=np.float64)
    if predictions.ndim == 2:
        calibrated = (
            predictions if chosen.temperature is None else with_temperature(predictions, chosen.temperature)
        )
        columns = {**as_columns(calibrated), "label": calibrated.argmax(axis=1)}
        if chosen.cut_points and submission_kind in ("label", "class_name"):
            columns["label"] = with_cut_points(calibrated, chosen.cut_points)
        return columns
    if chosen.clip is not None:
        return {"probability": clip(predictions, chosen.clip)}
    if chosen.threshold is not None:
        return {"probability": predictions, "label": (predictions >= chosen.threshold).astype(int)}
    return {"probability": predictions}


def post_process_multiclass(
    submission_kind: str,
    metric: Metric,
    oof: np.ndarray,
    labels: np.ndarray,
    test: np.ndarray,
    **common: object,
) -> tuple[PostProcessing, dict[str, np.ndarray]]:
    """Many classes: the temperature that minimises out-of-fold log loss, applied to the test
    predictions (none for ROC AUC, which ranks); hard labels are the most probable class (a
    temperature never changes it), or the expected class cut at the points chosen for QWK."""
    averaged = multiclass_scores(labels, oof)
    common = {"oof_single_view": averaged, **common, "oof_with_tta": averaged}
    if metric.many_postprocessing == "none":
        chosen = PostProcessing(**common)
    else:
        temperature, _ = choose_temperature(oof, labels)
        chosen = PostProcessing(
            **common,
            temperature=temperature,
            oof_with_tta_and_temperature=multiclass_scores(labels, with_temperature(oof, temperature)),
        )
    if submission_kind in ("label", "class_name") and metric.many_postprocessing == "cut_points":
        cuts, score = choose_cut_points(oof, labels, metric)
        if cuts is not None:
            chosen = dataclasses.replace(chosen, cut_points=cuts, oof_with_cut_points={metric.name: score})
    return chosen, apply_postprocessing(chosen, submission_kind, test)
