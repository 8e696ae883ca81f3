"""`make bench-quality`: the quality ladder on real photos, every row measured in this run.

    python -m benchmarks.quality [--quick]

Trains on the 1,500 photos of dogs-vs-cats-mini and scores on its 502 test photos with the
hidden solution.csv (used for nothing else): a keras.io-style from-scratch baseline, the
project's small CNN, MobileNet alpha=0.25 with real ImageNet weights (../shared/weights) frozen
(backbone every epoch, then on features computed once), two-phase, a k-fold ensemble, then TTA
and OOF-chosen clipping. Prints one markdown table and writes it to runs/bench/quality-<UTC>.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, log_loss

from benchmarks.photos import SHARED
from pipeline import layout
from pipeline.acquire.index import ImageIndex, prepare_index
from pipeline.competitions import get_competition
from pipeline.config import Config, load_config
from pipeline.fit.cross_validation import train_kfold
from pipeline.fit.train import train_holdout
from pipeline.infer.predict import member_predictions, predict_run
from pipeline.run import Run

WORK = layout.bench_dir() / "quality"
WEIGHTS = (
    Path(os.environ.get("PIPELINE_SHARED_WEIGHTS", SHARED.parent / "weights"))
    / "mobilenet_2_5_224_tf_no_top.h5"
)
Row = dict[str, str]


def base_config(**values: object) -> Config:
    overrides = {
        "competition": "dogs-vs-cats",
        "paths.input_root": str(WORK / "input"),
        "paths.data_root": str(WORK / "data"),
        "paths.runs_root": str(WORK / "runs"),
        "data.validation_workers": 2,
        "model.backbone": "mobilenet-0.25",
        "model.weights": str(WEIGHTS),
        "data.image_size": 160,
        "train.head_epochs": 6,
        "train.fine_epochs": 4,
    }
    return load_config(overrides={**overrides, **values}, environ={})


def scores(probabilities: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(log loss, accuracy) on the test photos."""
    p = np.clip(probabilities, 1e-7, 1 - 1e-7)
    return float(log_loss(labels, p, labels=[0, 1])), float(accuracy_score(labels, p >= 0.5))


def timed(run: Callable[[], object]) -> tuple[object, float]:
    start = time.perf_counter()
    result = run()
    return result, time.perf_counter() - start


def keras_io_baseline(index: ImageIndex, epochs: int) -> tuple[np.ndarray, list[str]]:
    """What a user writes from the keras.io tutorial: image_dataset_from_directory + a small CNN."""
    folder = WORK / "by-class"
    if not folder.exists():
        for path, label in zip(index.train["path"], index.train["label"], strict=True):
            target = folder / ("dog" if label else "cat") / Path(path).name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(Path(path).resolve())
    size = (128, 128)
    train = keras.utils.image_dataset_from_directory(
        folder, validation_split=0.2, subset="training", seed=1, image_size=size, label_mode="binary"
    )
    validation = keras.utils.image_dataset_from_directory(
        folder, validation_split=0.2, subset="validation", seed=1, image_size=size, label_mode="binary"
    )
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((*size, 3)), keras.layers.Rescaling(1 / 255)])
    for filters in (32, 64, 128):
        model.add(keras.layers.Conv2D(filters, 3, activation="relu"))
        model.add(keras.layers.MaxPooling2D())
    model.add(keras.layers.GlobalAveragePooling2D())
    model.add(keras.layers.Dropout(0.5))
    model.add(keras.layers.Dense(1, activation="sigmoid"))
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    model.fit(train, validation_data=validation, epochs=epochs, verbose=2)
    test_dir = Path(index.test["path"].iloc[0]).parent
    test = keras.utils.image_dataset_from_directory(test_dir, labels=None, shuffle=False, image_size=size)
    ids = [Path(p).stem for p in test.file_paths]
    return model.predict(test, verbose=0)[:, 0], ids


def single_view_test(run: Run, index: ImageIndex, config: Config) -> np.ndarray:
    """(members, test images): each finished member's predictions of the unchanged test images (the
    first of the views `predict` caches, so that it reuses them)."""
    views = config.predict.tta.split(",")
    return np.stack([member_predictions(m, index, config, views)[2][0] for m in run.members()])


def ladder(quick: bool = False) -> list[Row]:
    """Every row trained and scored in this run; the ratio is log loss / the baseline's."""
    os.environ.setdefault("PIPELINE_SHARED_DATASETS", str(SHARED))
    mini = SHARED / "dogs-vs-cats-mini"
    (WORK / "input").mkdir(parents=True, exist_ok=True)
    if not (WORK / "input" / "dogs-vs-cats").exists():
        (WORK / "input" / "dogs-vs-cats").symlink_to(mini)
    shutil.rmtree(WORK / "runs", ignore_errors=True)  # every row trained in this run
    competition = get_competition("dogs-vs-cats")
    index = prepare_index(base_config(), competition)
    solution = pd.read_csv(mini / "solution.csv").astype({"id": str}).set_index("id")["label"]
    test_labels = solution.loc[index.test["id"].astype(str)].to_numpy()
    epochs = 3 if quick else 10
    results: list[tuple[str, np.ndarray, float]] = []

    (probabilities, ids), seconds = timed(lambda: keras_io_baseline(index, epochs))
    baseline = pd.Series(probabilities, index=ids).loc[index.test["id"].astype(str)].to_numpy()
    results.append(
        (
            f"keras.io-style small CNN, image_dataset_from_directory, 128 px, {epochs} epochs",
            baseline,
            seconds,
        )
    )

    def holdout(name: str, config: Config) -> None:
        run, seconds = timed(lambda: train_holdout(config, competition, index))
        assert "seconds" in run.read_metrics(), f"{run.path} was not trained in this run"
        results.append((name, single_view_test(run, index, config)[0], seconds))

    holdout(
        "project small CNN (holdout, one view)",
        base_config(**{
            "model.backbone": "small-cnn", "model.weights": "none", "data.image_size": 128,
            "train.head_epochs": epochs + 5, "train.head_learning_rate": 3e-3, "train.patience": 4,
            "train.run_name": "small-cnn",
        }),
    )  # fmt: skip
    frozen = {"train.fine_epochs": 0, "train.head_epochs": 2 if quick else 6}
    holdout(
        "MobileNet 0.25 frozen only, backbone every epoch (augmented)",
        base_config(**frozen, **{"train.run_name": "frozen"}),
    )
    holdout(
        "MobileNet 0.25 frozen only, head on features computed once",
        base_config(**frozen, **{"train.head_cache_features": True, "train.run_name": "features"}),
    )
    short = {"train.head_epochs": 2, "train.fine_epochs": 1} if quick else {}
    two_phase = base_config(**short, **{"train.run_name": "two-phase"})
    holdout("MobileNet 0.25 two-phase (holdout, one view)", two_phase)
    folds = 2 if quick else 3
    kfold = base_config(**short, **{"train.folds": folds, "train.run_name": "kfold"})
    cv, seconds = timed(lambda: train_kfold(kfold, competition, index))
    one_view = single_view_test(cv, index, kfold).mean(axis=0)
    results.append((f"MobileNet 0.25 {folds}-fold ensemble (one view)", one_view, seconds))
    tta = predict_run(kfold, competition, index, cv)  # what `make predict` submits
    chosen = tta.postprocessing
    name = f"+ TTA ({', '.join(chosen.views)}; {chosen.average} average) + OOF-chosen clip {chosen.clip}"
    results.append((name, tta.test["probability"].to_numpy(), seconds))

    base_loss = scores(baseline, test_labels)[0]
    rows = []
    for name, probabilities, seconds in results:
        loss, accuracy = scores(probabilities, test_labels)
        rows.append({
            "model (trained on 1,500 mini photos, scored on its 502 test photos)": name,
            "test log loss": f"{loss:.4f}",
            "test accuracy": f"{accuracy:.4f}",
            "wall time": f"{seconds:.0f} s",
            "log loss / baseline": f"{loss / base_loss:.2f}",
        })  # fmt: skip
    return rows


def main() -> None:
    from benchmarks.bench import machine, markdown_table

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer epochs: a smoke run")
    args = parser.parse_args()
    started = time.perf_counter()
    table = markdown_table(ladder(args.quick))
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    report = (
        f"# Quality ladder {'(quick) ' if args.quick else ''}{stamp}\n\nMachine: {machine()}\n\n{table}\n\n"
        f"Total {time.perf_counter() - started:.0f} s. Wall time of a row: its training (k-fold: all folds); "
        "the TTA row reuses the k-fold run's models.\n"
    )
    print(report)
    WORK.mkdir(parents=True, exist_ok=True)
    (layout.bench_dir() / f"quality-{stamp}.md").write_text(report)


if __name__ == "__main__":
    main()
