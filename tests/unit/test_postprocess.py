"""Averaging space, clipping and threshold: each chosen on out-of-fold predictions."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import log_loss

from pipeline.infer.postprocess import average, choose_clip, choose_space, choose_threshold, clip, logit


def test_probability_and_logit_averages() -> None:
    p = np.array([[0.9, 0.2], [0.6, 0.4]])
    np.testing.assert_allclose(average(p, "probability"), [0.75, 0.3])
    np.testing.assert_allclose(logit(average(p, "logit")), logit(p).mean(axis=0))
    with pytest.raises(ValueError, match="unknown averaging space"):
        average(p, "median")


def test_the_space_that_scores_better_is_chosen() -> None:
    labels = np.ones(50, dtype=int)
    sure_and_unsure = np.stack([np.full(50, 0.999), np.full(50, 0.5)])  # logit keeps the confidence
    assert choose_space(sure_and_unsure, labels)[0] == "logit"
    one_confident_mistake = np.stack([np.full(50, 0.001), np.full(50, 0.9)])  # logit follows the mistake
    assert choose_space(one_confident_mistake, labels)[0] == "probability"


def test_clipping_is_chosen_only_when_it_pays() -> None:
    labels = np.array([1, 1, 0, 0, 1, 0] * 20)
    confident = np.where(labels == 1, 0.999, 0.001)
    confident[:3] = 1 - confident[:3]  # three confident mistakes: clipping pays
    c, loss = choose_clip(confident, labels)
    assert c > 0 and loss < log_loss(labels, confident)
    assert loss == pytest.approx(log_loss(labels, clip(confident, c)))
    assert choose_clip(np.where(labels == 1, 0.99, 0.01), labels)[0] == 0.0  # nothing to gain


def test_threshold_separates_shifted_scores() -> None:
    labels = np.array([1, 1, 0, 0, 1, 0] * 20)
    threshold, accuracy = choose_threshold(np.where(labels == 1, 0.35, 0.25), labels)
    assert 0.25 < threshold <= 0.35 and accuracy == 1.0
    assert choose_threshold(np.where(labels == 1, 0.9, 0.1), labels)[0] == pytest.approx(
        0.5
    )  # ties: nearest 0.5
