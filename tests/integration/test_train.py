"""Two-phase transfer learning on tiny images: learning, freezing, weights, precision, resume."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest

from pipeline import layout
from pipeline.acquire.index import ImageIndex
from pipeline.atomic import DiskFullError, disk_error_message
from pipeline.competitions import Competition
from pipeline.fit import checkpoints
from pipeline.fit.checkpoints import PREVIOUS, WEIGHTS
from pipeline.fit.splits import holdout_split
from pipeline.fit.train import train_holdout
from pipeline.model.backbones import WeightsError, build_feature_extractor
from pipeline.model.classifier import build_classifier
from pipeline.registry import get_backbone
from tests.callbacks import KillAfterEpoch, Snapshots
from tests.conftest import tiny_config

SMALL_CNN = {
    "model__backbone": "small-cnn",
    "data__image_size": 48,
    "data__batch_size": 16,
    "train__head_learning_rate": 3e-3,
}


def test_small_cnn_learns_the_demo_reproducibly(
    tmp_path: Path, demo: Competition, demo_index: ImageIndex
) -> None:
    results = []
    for name in ("first", "second"):
        config = tiny_config(
            tmp_path, train__run_name=name, train__head_epochs=6, data__deterministic=True, **SMALL_CNN
        )
        results.append(train_holdout(config, demo, demo_index))
    result = results[0]
    metrics = result.read_metrics()
    assert metrics["accuracy"] >= 0.85  # chance is 0.5; a label or pipeline bug cannot get here
    assert metrics["log_loss"] < 0.45
    assert results[1].read_metrics()["log_loss"] == pytest.approx(metrics["log_loss"], abs=1e-6)
    run = result.path
    for name in ("model.keras", "history.csv", "metrics.json", "config.json", "validation_predictions.csv"):
        assert (run / name).is_file(), name
    assert any((run / "tensorboard").rglob("*tfevents*"))
    assert set(json.loads((run / "metrics.json").read_text())) >= {"log_loss", "accuracy", "mcc", "roc_auc"}
    history = pd.read_csv(run / "history.csv")
    assert history["epoch"].tolist() == list(range(len(history))) and {"val_loss", "phase"} <= set(
        history.columns
    )
    _, validation = holdout_split(config, demo_index)
    reloaded = keras.saving.load_model(run / "model.keras")
    predictions = pd.read_csv(run / "validation_predictions.csv", dtype={"id": str})
    assert predictions["id"].tolist() == validation["id"].tolist()
    assert reloaded.output.dtype == "float32"


def test_holdout_split_is_stratified_and_saved(tmp_path: Path, demo_index: ImageIndex) -> None:
    config = tiny_config(tmp_path)
    train, validation = holdout_split(config, demo_index)
    assert len(validation) == len(demo_index.train) // 5 and set(train.index).isdisjoint(validation.index)
    assert validation["label"].mean() == pytest.approx(0.5, abs=0.05)
    _, again_validation = holdout_split(config, demo_index)
    assert again_validation.index.equals(validation.index)
    assert layout.folds_file(config, 5).is_file()


@pytest.fixture(scope="module")
def effnet_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An EfficientNetV2-B0 weights file made here (no weight server is reachable)."""
    path = tmp_path_factory.mktemp("weights") / "efficientnetv2-b0_notop.weights.h5"
    keras.utils.set_random_seed(5)
    build_feature_extractor(get_backbone("efficientnetv2-b0"), 32, "none").save_weights(path)
    return path


def test_phase_one_freezes_the_backbone_and_phase_two_changes_only_the_unfrozen_layers(
    tmp_path: Path, demo: Competition, demo_index: ImageIndex, effnet_weights: Path
) -> None:
    config = tiny_config(
        tmp_path,
        model__backbone="efficientnetv2-b0",
        model__weights=str(effnet_weights),
        train__head_epochs=1,
        train__fine_epochs=1,
        train__unfreeze=2.0,
        train__fine_learning_rate=1e-2,
        train__warmup_fraction=0.0,
    )
    snapshots = Snapshots()
    train_holdout(config, demo, demo_index, callbacks=[snapshots])
    head_begin, head_end = snapshots.begin[0], snapshots.end[0]
    for key, value in head_begin.items():
        np.testing.assert_array_equal(value, head_end[key], err_msg=f"{key} changed in the frozen phase")
    fine_begin, fine_end = snapshots.begin[1], snapshots.end[1]
    changed = {
        layer for (layer, i), value in fine_begin.items() if not np.array_equal(value, fine_end[(layer, i)])
    }
    backbone = build_feature_extractor(get_backbone("efficientnetv2-b0"), 32, "none")
    expected = {
        layer.name
        for layer in backbone.layers
        if layer.trainable_weights
        and layer.name.startswith(("top_", "block6h_"))
        and not isinstance(layer, keras.layers.BatchNormalization)
    }
    assert expected and changed == expected


def test_weights_load_from_a_file_and_a_mismatched_file_is_explained(
    effnet_weights: Path, tmp_path: Path
) -> None:
    loaded = build_feature_extractor(get_backbone("efficientnetv2-b0"), 32, str(effnet_weights))
    keras.utils.set_random_seed(5)
    fresh = build_feature_extractor(get_backbone("efficientnetv2-b0"), 32, "none")
    assert all(np.array_equal(a, b) for a, b in zip(loaded.get_weights(), fresh.get_weights(), strict=True))
    with pytest.raises(WeightsError, match=r"does not fit resnet50v2 .*arrays"):
        build_feature_extractor(get_backbone("resnet50v2"), 32, str(effnet_weights))
    with pytest.raises(WeightsError, match="does not exist"):
        build_feature_extractor(get_backbone("efficientnetv2-b0"), 32, str(tmp_path / "missing.weights.h5"))
    not_weights = tmp_path / "notes.weights.h5"
    not_weights.write_text("hello")
    with pytest.raises(WeightsError, match="not a Keras weights file"):
        build_feature_extractor(get_backbone("efficientnetv2-b0"), 32, str(not_weights))


def test_unreachable_weight_server_says_how_to_work_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    from keras.src.utils import file_utils

    def no_network(*args: object, **kwargs: object) -> str:
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: None -- no route to host")

    monkeypatch.setattr(file_utils, "get_file", no_network)
    with pytest.raises(WeightsError, match=r"--weights /kaggle/input/"):
        build_feature_extractor(get_backbone("efficientnetv2-b0"), 32, "imagenet")


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_output_is_float32_under_mixed_precision(tmp_path: Path, policy: str) -> None:
    keras.mixed_precision.set_global_policy(policy)
    try:
        config = tiny_config(tmp_path, model__backbone="efficientnetv2-b0", model__weights="none")
        classifier = build_classifier(config, num_classes=2)
        assert (
            classifier.backbone.layers[-2].compute_dtype != "float32"
        )  # the backbone does run in mixed precision
        output = classifier.model(np.zeros((2, 32, 32, 3), np.float32))
        assert output.dtype == "float32" and output.shape == (2, 1)
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_a_killed_run_resumes_and_a_finished_run_is_not_retrained(
    tmp_path: Path, demo: Competition, demo_index: ImageIndex, capsys
) -> None:
    config = tiny_config(tmp_path, train__head_epochs=4, train__patience=10, **SMALL_CNN)
    with pytest.raises(KeyboardInterrupt):
        train_holdout(config, demo, demo_index, callbacks=[KillAfterEpoch(1)])
    resumed = Snapshots()
    result = train_holdout(config, demo, demo_index, callbacks=[resumed])
    assert resumed.epochs == [2, 3]  # epochs 0 and 1 were kept
    assert "phase head: epochs 3-4," in capsys.readouterr().out  # the epochs run now, not 1-4
    assert result.read_history()["epoch"].tolist() == [0, 1, 2, 3]
    again = Snapshots()
    train_holdout(config, demo, demo_index, callbacks=[again])
    assert again.epochs == []  # a finished run is not trained again


@pytest.mark.parametrize("damaged", [(WEIGHTS,), (WEIGHTS, WEIGHTS + PREVIOUS)])
def test_a_checkpoint_cut_by_a_full_disk_is_set_aside_and_the_run_resumes(
    tmp_path: Path, demo: Competition, demo_index: ImageIndex, capsys, damaged: tuple[str, ...]
) -> None:
    config = tiny_config(tmp_path, train__head_epochs=4, train__patience=10, **SMALL_CNN)
    with pytest.raises(KeyboardInterrupt):
        train_holdout(config, demo, demo_index, callbacks=[KillAfterEpoch(1)])
    backup = next(tmp_path.glob("runs/*/*/backup/head"))
    for name in damaged:  # what a full disk leaves: the file cut where the disk filled
        (backup / name).write_bytes((backup / name).read_bytes()[:3000])
    resumed = Snapshots()
    run = train_holdout(config, demo, demo_index, callbacks=[resumed])
    assert "damaged" in capsys.readouterr().out
    assert resumed.epochs == ([1, 2, 3] if len(damaged) == 1 else [0, 1, 2, 3])  # the last good state
    assert run.is_finished and run.read_history()["epoch"].tolist()[-1] == 3


def test_no_checkpoint_is_written_onto_a_disk_without_room_and_the_same_command_continues(
    tmp_path: Path, demo: Competition, demo_index: ImageIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    config = tiny_config(tmp_path, train__head_epochs=2, **SMALL_CNN)
    real = shutil.disk_usage
    monkeypatch.setattr(checkpoints.shutil, "disk_usage", lambda path: real(path)._replace(free=200_000))
    with pytest.raises(DiskFullError) as raised:
        train_holdout(config, demo, demo_index)
    assert "MB free" in disk_error_message(raised.value) and "same command" in str(raised.value)
    assert not list(tmp_path.glob("runs/**/*.h5"))  # nothing half-written
    monkeypatch.setattr(checkpoints.shutil, "disk_usage", real)  # space freed
    assert train_holdout(config, demo, demo_index).is_finished


def test_lr_find_suggests_a_rate_and_train_uses_it(
    tmp_path: Path, demo: Competition, demo_archive_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipeline import flow
    from pipeline.fit import lr_find

    monkeypatch.setattr(lr_find, "STEPS", 80)
    small = {**SMALL_CNN, "paths__input_root": str(demo_archive_dir.parent), "train__head_epochs": 1}
    suggested = flow.lr_find(tiny_config(tmp_path, **small))
    assert set(suggested) == {"head"} and 1e-7 <= suggested["head"] <= 1.0  # the small CNN has no fine phase
    assert layout.lr_find_file(tiny_config(tmp_path, **small)).with_suffix(".png").is_file()
    auto = tiny_config(tmp_path, **{**small, "train__head_learning_rate": "auto"})
    run = flow.train(auto, holdout=True, report_after=False)
    assert run.read_config()["train"]["head_learning_rate"] == pytest.approx(suggested["head"])
