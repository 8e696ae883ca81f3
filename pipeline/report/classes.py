"""The report's tables for many classes: per-class precision, recall and F1, the most frequent
confusions, and each validation image's prediction in plain columns (for galleries and captions).

Pure functions of arrays and tables; no model, no file.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from pipeline.fit.metrics import from_columns, hard_labels


def predictions_table(validation: pd.DataFrame, threshold: float = 0.5) -> pd.DataFrame:
    """`validation` with predicted (class index), p_predicted, p_true and margin (the top
    probability minus the runner-up's: small = unsure), for two classes or many."""
    probabilities = from_columns(validation)
    labels = validation["label"].to_numpy(dtype=int)
    if probabilities.ndim == 1:
        probabilities = np.stack([1 - probabilities, probabilities], axis=1)
        predicted = hard_labels(probabilities[:, 1], threshold)
    else:
        predicted = probabilities.argmax(axis=1)
    rows = np.arange(len(labels))
    top_two = np.sort(probabilities, axis=1)[:, -2:]
    return validation.assign(
        predicted=predicted,
        p_predicted=probabilities[rows, predicted],
        p_true=probabilities[rows, labels],
        margin=top_two[:, 1] - top_two[:, 0],
        wrong=predicted != labels,
    )


def per_class_table(labels: np.ndarray, predicted: np.ndarray, classes: tuple[str, ...]) -> pd.DataFrame:
    """One row per class: images, precision, recall, F1; the worst F1 first."""
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predicted, labels=list(range(len(classes))), zero_division=0
    )
    table = pd.DataFrame(
        {"class": classes, "images": support, "precision": precision, "recall": recall, "F1": f1}
    )
    return table.sort_values(["F1", "images"], ascending=[True, False]).reset_index(drop=True)


def top_confusions(
    labels: np.ndarray, predicted: np.ndarray, classes: tuple[str, ...], count: int = 10
) -> pd.DataFrame:
    """The most frequent mistakes: true class, predicted class, images, and their share of the
    true class's images."""
    matrix = confusion_matrix(labels, predicted, labels=list(range(len(classes))))
    np.fill_diagonal(matrix, 0)
    order = np.argsort(matrix, axis=None)[::-1][:count]
    rows = []
    totals = np.bincount(labels, minlength=len(classes))
    for flat in order:
        true, guess = np.unravel_index(flat, matrix.shape)
        if matrix[true, guess] == 0:
            break
        rows.append(
            {
                "true": classes[true],
                "predicted": classes[guess],
                "images": int(matrix[true, guess]),
                "share of the true class": float(matrix[true, guess] / max(totals[true], 1)),
            }
        )
    return pd.DataFrame(rows, columns=["true", "predicted", "images", "share of the true class"])
