"""Every backbone family end to end (train both phases, predict, stack, report), keras-hub's
through tiny presets saved here (no hub weights are reachable offline), and what a kernel does
with a hub backbone."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pandas as pd
import pytest

from pipeline import flow
from pipeline.config import ConfigError
from pipeline.registry import BACKBONES, FAMILIES
from tests.conftest import tiny_config

HUB_MISSING = importlib.util.find_spec("keras_hub") is None
needs_hub = pytest.mark.skipif(HUB_MISSING, reason="keras-hub is not installed: make setup EXTRAS=dev,hub")


def tiny_preset(folder: Path, kind: str) -> Path:
    """A keras-hub preset of random weights, saved as `save_to_preset` saves real ones."""
    import keras_hub

    if kind == "dinov2":
        backbone = keras_hub.models.DINOV2Backbone(
            patch_size=14,
            num_layers=2,
            hidden_dim=16,
            num_heads=2,
            intermediate_dim=32,
            image_shape=(28, 28, 3),
            position_embedding_shape=(28, 28, 3),
        )
        mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
        converter = keras_hub.layers.DINOV2ImageConverter(
            image_size=(28, 28),
            scale=[1 / (255 * s) for s in std],
            offset=[-m / s for m, s in zip(mean, std, strict=True)],
        )
    else:
        backbone = keras_hub.models.ResNetBackbone(
            input_conv_filters=[64],
            input_conv_kernel_sizes=[3],
            stackwise_num_filters=[64, 64],
            stackwise_num_blocks=[1, 1],
            stackwise_num_strides=[1, 2],
            block_type="basic_block",
            use_pre_activation=True,
            image_shape=(None, None, 3),
        )
        converter = keras_hub.layers.ResNetImageConverter(image_size=(32, 32), scale=1 / 255.0)
    backbone.save_to_preset(str(folder))
    converter.save_to_preset(str(folder))
    return folder


@pytest.fixture(scope="module")
def presets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    if HUB_MISSING:
        pytest.skip("keras-hub is not installed: make setup EXTRAS=dev,hub")
    root = tmp_path_factory.mktemp("presets")
    return {kind: tiny_preset(root / kind, kind) for kind in ("dinov2", "resnet")}


# One tiny case per registered family: a new family adds its own here, or this test fails.
CASES = {
    "keras-applications": ("mobilenet-0.25", "none", 32),
    "small-cnn": ("small-cnn", "none", 32),
    "keras-hub": ("dinov2-small", "dinov2", 28),
}


def test_every_family_has_a_case() -> None:
    assert set(CASES) == set(FAMILIES)


@pytest.mark.parametrize("family", sorted(CASES))
def test_every_family_trains_both_phases_and_predicts(
    tmp_path: Path, demo_archive_dir: Path, request: pytest.FixtureRequest, family: str
) -> None:
    backbone, weights, size = CASES[family]
    if BACKBONES[backbone].family_entry.missing():
        pytest.skip(BACKBONES[backbone].family_entry.missing())
    if family == "keras-hub":
        weights = str(request.getfixturevalue("presets")[weights])
    config = tiny_config(
        tmp_path,
        paths__input_root=str(demo_archive_dir.parent),
        paths__submissions_root=str(tmp_path / "submissions"),
        model__backbone=backbone,
        model__weights=weights,
        data__image_size=size,
        train__folds=2,
        train__head_epochs=1,
        train__fine_epochs=1,
        train__head_cache_features=False,
    )
    run = flow.train(config, report_after=False)
    assert len(run.members()) == 2
    history = run.members()[0].read_history()
    assert set(history["phase"]) == ({"head", "fine"} if BACKBONES[backbone].pretrained else {"head"})
    submission = pd.read_csv(flow.predict(config), dtype={"id": str})
    assert len(submission) == 20 and submission["label"].between(0, 1).all()


@needs_hub
@pytest.mark.parametrize("kind", ["dinov2", "resnet"])
def test_a_hub_backbone_stacks_and_reports(
    tmp_path: Path, demo_archive_dir: Path, presets: dict[str, Path], kind: str
) -> None:
    backbone, size = ("dinov2-small", 28) if kind == "dinov2" else ("hub-resnetv2-50", 32)
    config = tiny_config(
        tmp_path,
        paths__input_root=str(demo_archive_dir.parent),
        paths__submissions_root=str(tmp_path / "submissions"),
        model__backbone=backbone,
        model__weights=str(presets[kind]),
        data__image_size=size,
        stack__sizes=f"{size},{2 * size}",
        train__folds=2,
        train__head_epochs=1,
        train__fine_epochs=1,
    )
    stacked = pd.read_csv(flow.stack(config), dtype={"id": str})
    assert len(stacked) == 20
    run = flow.train(config, report_after=False)
    page = flow.report(config, run).read_text()
    assert "Grad-CAM" in page or "No Grad-CAM" in page
    if kind == "dinov2":  # a transformer's tokens: said, not drawn
        assert "sequence of tokens" in page


@needs_hub
def test_hub_presets_of_another_architecture_or_size_are_refused_before_any_work(
    tmp_path: Path, presets: dict[str, Path]
) -> None:
    dino = {"model__backbone": "dinov2-small", "data__image_size": 28}
    with pytest.raises(ConfigError, match="ResNetBackbone"):
        tiny_config(tmp_path, **dino, model__weights=str(presets["resnet"]))
    with pytest.raises(ConfigError, match="multiple of 14"):
        tiny_config(tmp_path, model__backbone="dinov2-small", data__image_size=30)
    with pytest.raises(ConfigError, match=r"config\.json"):
        tiny_config(tmp_path, **dino, model__weights=str(tmp_path))
    assert not (tmp_path / "runs").exists()


def test_a_hub_backbone_without_the_extra_is_refused_naming_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    from pipeline import registry

    real = registry.importlib.util.find_spec
    monkeypatch.setattr(
        registry.importlib.util, "find_spec", lambda name, *a: None if name == "keras_hub" else real(name, *a)
    )
    with pytest.raises(ConfigError, match="EXTRAS=dev,hub"):
        tiny_config(tmp_path, model__backbone="dinov2-small", data__image_size=28)


@needs_hub
def test_a_kernel_attaches_the_hub_model_and_finds_it_under_kaggle_input(
    tmp_path: Path, presets: dict[str, Path]
) -> None:
    import shutil

    from pipeline.kernel.bundle import build_bundle
    from pipeline.kernel.metadata import KernelMetadataError
    from pipeline.kernel.runner import find_weights

    config = tiny_config(
        tmp_path,
        competition="dogs-vs-cats",
        model__backbone="dinov2-small",
        model__weights="imagenet",
        data__image_size=28,
        kernel__internet="off",
    )
    folder = build_bundle(config, "me", tmp_path / "bundle")
    metadata = json.loads((folder / "kernel-metadata.json").read_text())
    assert metadata["model_sources"] == ["keras/dinov2/keras/dinov2_small/1"]
    attached = tmp_path / "kaggle" / "input" / "dinov2" / "keras" / "dinov2_small" / "1"
    shutil.copytree(presets["dinov2"], attached)
    assert find_weights(config, tmp_path / "kaggle" / "input") == str(attached)
    local = tiny_config(
        tmp_path, model__backbone="dinov2-small", model__weights=str(presets["dinov2"]), data__image_size=28
    )
    with pytest.raises(KernelMetadataError):  # a folder here is nothing a kernel can reach
        build_bundle(local, "me", tmp_path / "refused")
    assert not (tmp_path / "refused").exists()
