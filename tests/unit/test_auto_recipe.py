"""The auto recipe's pure parts: class weights, the nested ensemble estimate, block selection on
OOF, the plan and its budget, the stack's candidate sizes."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.config import AUTO_STACK_SIZES, load_config, sizes_for
from pipeline.fit.class_weights import class_weights, sample_weights
from pipeline.infer.ensembles import get_method
from pipeline.infer.nested import clearly_lower, nested_predictions, nested_score, per_image_log_loss
from pipeline.infer.stack import Block, StackData, select_blocks
from pipeline.metrics import get_metric
from pipeline.recipe import plan
from pipeline.registry import get_backbone


def test_auto_class_weights_only_past_three_to_one_and_balanced_on_demand() -> None:
    skewed = np.array([0] * 10 + [1] * 40)
    assert class_weights(skewed, 2, "auto") == {0: 2.5, 1: 0.625}  # 50 / (2 x 10), 50 / (2 x 40)
    assert class_weights(np.array([0] * 10 + [1] * 30), 2, "auto") is None  # 3x: not yet
    assert class_weights(np.array([0] * 10 + [1] * 30), 2, "balanced") == pytest.approx({0: 2.0, 1: 2 / 3})
    assert class_weights(skewed, 2, "none") is None
    assert class_weights(np.array([0] * 5 + [2] * 20), 3, "balanced")[1] == 1.0  # a class absent keeps 1
    assert sample_weights(np.array([1, 0, 1]), {0: 2.5, 1: 0.625}).tolist() == [0.625, 2.5, 0.625]


def test_nested_estimate_is_worse_than_the_optimistic_one_on_noisy_members() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 300)
    oof = np.clip(labels * 0.5 + 0.25 + rng.normal(0, 0.25, (5, 300)), 0.01, 0.99)  # signal and noise each
    good = oof[0]
    folds = np.arange(300) % 3
    metric, method = get_metric("log_loss"), get_method("weighted")
    weights = method.fit(oof, labels, metric)
    optimistic = metric.of_probabilities(labels, method.combine(oof, weights))
    honest = nested_score(method, oof, labels, folds, metric)
    assert honest > optimistic  # log loss: the nested estimate is the worse one
    assert nested_predictions(method, oof, labels, folds, metric).shape == (300,)
    assert nested_score(method, oof[:1], labels, folds, metric) == metric.of_probabilities(labels, good)


def test_block_selection_keeps_informative_features_and_leaves_noise_out() -> None:
    rng = np.random.default_rng(1)
    labels = np.repeat([0, 1], 90)
    signal = labels[:, None] * 1.5 + rng.normal(0, 1, (180, 4))
    features = {
        Block("a", 32): np.vstack([signal, signal[:5]]),  # 180 training rows, then 5 test rows
        Block("a", 40): rng.normal(0, 1, (185, 30)),  # noise
    }
    data = StackData(
        labels, np.arange(180) % 3, np.zeros(0, int), np.zeros(0, int), np.zeros(0), None, 2, 1.0, 0
    )
    assert select_blocks(features, 180, data, get_metric("log_loss")) == [Block("a", 32)]


def test_the_plan_names_every_member_and_the_budget_defaults_locally() -> None:
    config = load_config(environ={})
    assert plan.budget(config) == plan.LOCAL_BUDGET
    limited = load_config(overrides={"train.time_budget": "90m"}, environ={})
    assert plan.budget(limited) == 5400
    steps = [plan.Step("stack", "features", 100.0), plan.Step("finetune", "folds", 900.0)]
    text = plan.describe(steps, 600, {"mobilenet-0.25 160px": 500.0})
    assert "stack" in text and "finetune" in text and "~1000 s in all" in text
    assert text.count("not started unless time is left") == 1  # the fine-tuned folds pass the budget


def test_auto_stack_sizes_are_candidates_a_backbone_can_take() -> None:
    auto = load_config(environ={})
    assert sizes_for(auto, get_backbone("mobilenet-0.25")) == list(AUTO_STACK_SIZES)
    patched = sizes_for(auto, get_backbone("dinov2-small"))
    assert all(size % 14 == 0 for size in patched) and len(patched) == len(set(patched))
    given = load_config(overrides={"stack.sizes": "32,48"}, environ={})
    assert sizes_for(given, get_backbone("mobilenet-0.25")) == [32, 48]


def test_a_gain_within_the_noise_of_the_images_does_not_count() -> None:
    labels = np.array([1, 0, 1, 1])
    losses = per_image_log_loss(labels, np.array([0.9, 0.2, 0.6, 0.99]))
    assert losses == pytest.approx(-np.log([0.9, 0.8, 0.6, 0.99]))
    assert per_image_log_loss(np.array([2]), np.array([[0.2, 0.3, 0.5]])) == pytest.approx([-np.log(0.5)])
    rng = np.random.default_rng(3)
    before = rng.uniform(0.05, 0.5, 1000)
    assert clearly_lower(before, before - 0.02)  # every image better
    assert not clearly_lower(before, before - 0.0004 + rng.normal(0, 0.05, 1000))  # 0.0004 in noise of 0.05
