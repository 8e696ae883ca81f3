"""Small pure functions of the recipe: precision, blocks, schedules, verbosity, durations, TTA views."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from pipeline.config import TTA_VIEWS, duration, load_config
from pipeline.fit.phases import fit_verbosity
from pipeline.fit.train import fine_tune_schedule
from pipeline.infer.tta import VIEWS, parse_views
from pipeline.model.devices import choose_precision
from pipeline.model.families.applications import block_of


@pytest.mark.parametrize(
    ("kind", "setting", "expected"),
    [
        ("cpu", "auto", "float32"),
        ("gpu", "auto", "mixed_float16"),
        ("tpu", "auto", "mixed_bfloat16"),
        ("gpu", "off", "float32"),
        ("cpu", "on", "mixed_bfloat16"),  # CPUs have no fast float16
    ],
)
def test_precision_per_device(kind: str, setting: str, expected: str) -> None:
    assert choose_precision(kind, setting) == expected


@pytest.mark.parametrize(
    ("layer", "block"),
    [
        ("block6h_expand_conv", "block6h"),
        ("conv4_block3_2_conv", "conv4_block3"),
        ("top_conv", "top"),
        ("post_bn", "top"),
        ("stem_conv", "stem"),
        ("conv1_conv", "stem"),
        ("conv_pw_13_bn", "block13"),  # MobileNet v1
        ("block_16_project", "block16"),  # MobileNetV2
        ("expanded_conv_depthwise", "block0"),
        ("expanded_conv_10_project_bn", "block10"),  # MobileNetV3
        ("Conv_1", "top"),
        ("block5_conv3", "block5"),  # VGG16, Xception
        ("conv2d_3", None),  # an auto-named residual: joins the block before it
    ],
)
def test_layers_map_to_their_blocks(layer: str, block: str | None) -> None:
    assert block_of(layer) == block


def test_fine_tuning_warms_up_then_decays_to_zero() -> None:
    config = load_config(
        overrides={"train.fine_learning_rate": 1e-3, "train.warmup_fraction": 0.1}, environ={}
    )
    schedule = fine_tune_schedule(config, steps=100)
    rates = np.array([float(schedule(step)) for step in (0, 5, 10, 55, 100)])
    assert rates[0] == pytest.approx(1e-5)  # a hundredth of the peak
    assert rates[0] < rates[1] < rates[2] == pytest.approx(1e-3)  # linear warmup over 10 steps
    assert rates[2] > rates[3] > rates[4] and rates[4] == pytest.approx(0.0, abs=1e-9)
    no_warmup = fine_tune_schedule(load_config(overrides={"train.warmup_fraction": 0.0}, environ={}), 10)
    assert float(no_warmup(0)) == pytest.approx(1e-4)
    assert isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule)


def test_progress_bar_on_a_terminal_one_line_per_epoch_in_a_log() -> None:
    assert fit_verbosity(True) == 1 and fit_verbosity(False) == 2


@pytest.mark.parametrize(("text", "seconds"), [("3h", 10800), ("90m", 5400), ("45s", 45), ("600", 600)])
def test_durations(text: str, seconds: float) -> None:
    assert duration(text) == seconds


def test_duration_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="not a duration"):
        duration("soon")


def test_every_declared_tta_view_is_implemented() -> None:
    assert tuple(VIEWS) == TTA_VIEWS
    assert parse_views(" original , hflip ") == ["original", "hflip"]
    with pytest.raises(ValueError, match="unknown TTA view"):
        parse_views("original,sideways")


@pytest.mark.parametrize(("amount", "expected"), [(0.3, 5), (1.0, 14), (2.0, 2), (100.0, 14)])
def test_unfreeze_takes_a_fraction_up_to_all_or_a_count(amount: float, expected: int) -> None:
    from pipeline.model.backbones import build_feature_extractor, unfreeze_top_blocks
    from pipeline.registry import get_backbone

    spec = get_backbone("mobilenet-0.25")
    backbone = build_feature_extractor(spec, 32, "none")
    unfrozen = unfreeze_top_blocks(backbone, amount, spec)
    assert len(unfrozen) == expected  # MobileNet v1: stem and block1 .. block13
    trainable = [layer for layer in backbone.layers if layer.trainable and layer.weights]
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in trainable)


def test_the_learning_rate_finder_suggests_a_rate_inside_the_longest_fall() -> None:
    import numpy as np

    from pipeline.fit.lr_find import suggestion

    rates = np.logspace(-7, 0, 200)
    noise = np.random.default_rng(0).normal(0, 0.005, 200)
    falling = 0.9 - 0.5 / (1 + np.exp(-2.0 * (np.log(rates) - np.log(1e-3))))  # falls around 1e-3
    losses = np.where(rates < 3e-2, falling, falling + (rates - 3e-2) * 50) + noise  # then diverges
    losses[:15] += 0.3 * np.exp(-np.arange(15) / 3)  # the smoothed average warming up
    chosen = suggestion(list(rates), list(losses))
    assert 1e-5 <= chosen <= 1e-2 and chosen < rates[int(np.argmin(losses))] / 2
    with pytest.raises(ValueError, match="too few"):
        suggestion([1e-7, 1e-6, 1e-5], [1.0, 2.0, 3.0])


def test_auto_learning_rates_need_the_finders_suggestions(tmp_path) -> None:
    import json

    from pipeline import flow, layout
    from pipeline.config import ConfigError, load_config

    config = load_config(
        overrides={"paths.runs_root": str(tmp_path), "train.head_learning_rate": "auto"}, environ={}
    )
    assert config.train.head_learning_rate == 0.0
    with pytest.raises(ConfigError, match="lr-find"):
        flow.resolve_auto_rates(config)
    layout.lr_find_file(config).parent.mkdir(parents=True)
    layout.lr_find_file(config).write_text(json.dumps({"suggested": {"head": 2e-3, "fine": 5e-5}}))
    resolved = flow.resolve_auto_rates(config)
    assert (
        resolved.train.head_learning_rate == 2e-3 and resolved.train.fine_learning_rate == 1e-4
    )  # fine as set


def test_no_trial_starts_that_the_longest_so_far_says_would_not_end_in_time() -> None:
    from pipeline.fit.tune import TimeBudget

    class Study:
        stopped = False

        def stop(self) -> None:
            self.stopped = True

    now = [0.0]
    budget = TimeBudget(100.0, clock=lambda: now[0])
    study = Study()
    for end in (30.0, 55.0):  # trials of 30 and 25 s: 45 s left after the second, enough for another
        now[0] = end
        budget(study, None)
    assert not study.stopped
    now[0] = 80.0  # a third trial of 25 s: 20 s left, less than the longest (30 s)
    budget(study, None)
    assert study.stopped
