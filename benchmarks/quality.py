"""`make bench-quality`: the quality ladder on real photos, every row measured in this run.

    python -m benchmarks.quality [--quick] [--sets mini,200px,digits] [--sets-only]

First, on each real set of benchmarks/real_sets.py (dogs-vs-cats-mini; 3,000/2,000 photos of
dogs-vs-cats-200px; scikit-learn's digits), beside each other: the hand-written keras-io script,
a hand-written stack of frozen features (benchmarks/handwritten_stack.py), and the default
`train` + `predict` (the auto recipe) for 2 seeds. Test labels only score; nothing is chosen on them.

Then the ladder of single techniques on the mini set: it trains on the 1,500 photos of dogs-vs-cats-mini and scores on its 502 test photos with the
hidden solution.csv (used for nothing else). The ladder: the hand-written keras-io transfer-learning
script (benchmarks/handwritten.py, the reference every ratio is taken against), a keras.io-style
from-scratch baseline, the project's small CNN, MobileNet alpha=0.25 with real ImageNet weights
(../shared/weights) frozen (backbone every epoch, then on features computed once), two-phase, a
k-fold ensemble, then TTA and OOF-chosen clipping, the finetune recipe (`train` + `predict`), the
stack of bottleneck features at the reference's size and at the default sizes, and a blend of the
default recipe with the stack (weights on out-of-fold predictions), and the default recipe trained
with the stack's confident test predictions as pseudo-labels. The ablations: the default recipe on the holdout
split with one setting changed at a time, each with several seeds (mean and range). Prints two
markdown tables and writes them to runs/bench/quality-<UTC>.md.
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

from benchmarks import handwritten, handwritten_stack
from benchmarks.photos import SHARED
from benchmarks.real_sets import SETS, RealSet
from benchmarks.real_sets import scores as real_scores
from pipeline import layout
from pipeline.acquire.index import ImageIndex, prepare_index
from pipeline.competitions import get_competition
from pipeline.config import Config, load_config
from pipeline.fit.cross_validation import train_kfold
from pipeline.fit.metrics import from_columns
from pipeline.fit.refit import train_refits
from pipeline.fit.train import train_holdout
from pipeline.infer.blend import blend
from pipeline.infer.predict import member_predictions, predict_run
from pipeline.infer.stack import fit_stack
from pipeline.run import Run

WORK = layout.bench_dir() / "quality"
WEIGHTS = (
    Path(os.environ.get("PIPELINE_SHARED_WEIGHTS", SHARED.parent / "weights"))
    / "mobilenet_2_5_224_tf_no_top.h5"
)
Row = dict[str, str]


def project_config(
    competition: str, input_root: Path, work: Path, image_size: int, **values: object
) -> Config:
    """The project's configuration of a bench row: MobileNet 0.25 on the real weights, every
    folder under `work`, then `values`."""
    overrides = {
        "competition": competition,
        "paths.input_root": str(input_root),
        "paths.data_root": str(work / "data"),
        "paths.runs_root": str(work / "runs"),
        "paths.submissions_root": str(work / "submissions"),
        "data.validation_workers": 2,
        "model.backbone": "mobilenet-0.25",
        "model.weights": str(WEIGHTS),
        "data.image_size": image_size,
    }
    return load_config(overrides={**overrides, **values}, environ={})


def base_config(**values: object) -> Config:
    """The mini ladder's configuration."""
    return project_config("dogs-vs-cats", WORK / "input", WORK, 160, **values)


SIX_FOUR = {"train.head_epochs": 6, "train.fine_epochs": 4}  # the reference's epochs, for the middle rows


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


def prepare() -> tuple[ImageIndex, np.ndarray]:
    """The mini set indexed under runs/bench/quality/ (runs emptied: every row trains in this run),
    and the true labels of its test photos in index order."""
    os.environ.setdefault("PIPELINE_SHARED_DATASETS", str(SHARED))
    mini = SHARED / "dogs-vs-cats-mini"
    (WORK / "input").mkdir(parents=True, exist_ok=True)
    if not (WORK / "input" / "dogs-vs-cats").exists():
        (WORK / "input" / "dogs-vs-cats").symlink_to(mini)
    shutil.rmtree(WORK / "runs", ignore_errors=True)
    shutil.rmtree(layout.features_dir(base_config()), ignore_errors=True)  # the stack's features too
    index = prepare_index(base_config(), get_competition("dogs-vs-cats"))
    solution = pd.read_csv(mini / "solution.csv").astype({"id": str}).set_index("id")["label"]
    return index, solution.loc[index.test["id"].astype(str)].to_numpy()


def reference(index: ImageIndex) -> tuple[np.ndarray, float]:
    """The hand-written script's test probabilities and wall time."""
    paths = index.train["path"].astype(str).tolist()
    test = index.test["path"].astype(str).tolist()
    labels = index.train["label"].to_numpy()
    probabilities, seconds = timed(lambda: handwritten.train_and_predict(paths, labels, test, WEIGHTS))
    return np.asarray(probabilities), seconds


FLIP_ONLY = {f"augment.{name}": 0.0 for name in ("rotation", "zoom", "translation", "contrast", "brightness")}
STRONGER = {
    "augment.rotation": 0.1,
    "augment.zoom": 0.2,
    "augment.translation": 0.15,
    "augment.contrast": 0.2,
    "augment.brightness": 0.2,
}
ABLATIONS: dict[str, dict[str, object]] = {
    "the default recipe": {},
    "unfreeze top 60% of blocks": {"train.unfreeze": 0.6},
    "unfreeze all blocks (BatchNormalization stays frozen)": {"train.unfreeze": 1.0},
    "6 head epochs": {"train.head_epochs": 6},
    "8 fine epochs": {"train.fine_epochs": 8},
    "augmentation: flip only": FLIP_ONLY,
    "augmentation: stronger": STRONGER,
    "label smoothing 0.05": {"train.label_smoothing": 0.05},
    "label smoothing 0.1": {"train.label_smoothing": 0.1},
    "EMA of the weights": {"train.ema": True},
    "resize by stretching (as the reference)": {"data.resize_mode": "stretch"},
    "image size 224 (the backbone's own)": {"data.image_size": 224},
}


def ablations(
    index: ImageIndex, test_labels: np.ndarray, reference_loss: float, seeds: int, only: str = ""
) -> list[Row]:
    """The default recipe on the holdout split (1,200 photos to train, 300 to validate), one change
    a row, `seeds` seeds each (the split moves with the seed): mean (min-max)."""
    competition = get_competition("dogs-vs-cats")
    base = base_config()
    train, augment = base.train, base.augment
    recipe = (
        f"the default recipe for MobileNet (unfreeze {train.unfreeze}, {train.head_epochs} head + "
        f"{train.fine_epochs} fine epochs, rotation {augment.rotation}, label smoothing {train.label_smoothing})"
    )
    rows = []
    for number, (name, change) in enumerate(ABLATIONS.items()):
        name = recipe if not change else name
        if only and only not in name:
            continue
        validation, test, accuracy, seconds = [], [], [], []
        for seed in range(seeds):
            config = base_config(**{
                "data.seed": 42 + seed, "train.run_name": f"ablation-{number}-seed{seed}", **change,
            })  # fmt: skip
            run, wall = timed(lambda config=config: train_holdout(config, competition, index))
            validation.append(run.read_metrics()["log_loss"])
            loss, acc = scores(single_view_test(run, index, config)[0], test_labels)
            test.append(loss)
            accuracy.append(acc)
            seconds.append(wall)
            print(
                f"ablation {name!r} seed {seed}: validation {validation[-1]:.4f}, test {loss:.4f}", flush=True
            )

        def spread(values: list[float]) -> str:
            return f"{np.mean(values):.4f} ({min(values):.4f}-{max(values):.4f})"

        rows.append({
            "change from the default recipe (holdout, one view)": name,
            "validation log loss": spread(validation),
            "test log loss": spread(test),
            "test accuracy": f"{np.mean(accuracy):.4f}",
            "wall time": f"{np.mean(seconds):.0f} s",
            "test log loss / reference": f"{np.mean(test) / reference_loss:.2f}",
        })  # fmt: skip
    return rows


def clipped(c: float | None) -> str:
    """How predict post-processed: dogs-vs-cats takes hard labels, so its probabilities are not clipped."""
    return (
        f" + OOF-chosen clip {c}" if c is not None else ", probabilities unclipped (hard-label competition)"
    )


def train_with_refits(config: Config, index: ImageIndex) -> Run:
    """What `make train` does: the k folds, then the refit models."""
    competition = get_competition("dogs-vs-cats")
    run = train_kfold(config, competition, index)
    if config.train.refit:
        train_refits(config, competition, index, run)
    return run


def ladder(index: ImageIndex, test_labels: np.ndarray, quick: bool = False) -> tuple[list[Row], float]:
    """Every row trained and scored in this run; the ratio is log loss / the reference's. Returns
    the rows and the reference's test log loss."""
    competition = get_competition("dogs-vs-cats")
    epochs = 3 if quick else 10
    results: list[tuple[str, np.ndarray, float]] = []

    probabilities, seconds = reference(index)
    results.append(
        (
            "reference: hand-written keras-io MobileNet 0.25 script, 160 px, 6 + 4 epochs",
            probabilities,
            seconds,
        )
    )

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
        base_config(**frozen, **{"train.head_cache_features": False, "train.run_name": "frozen"}),
    )
    holdout(
        "MobileNet 0.25 frozen only, head on features computed once",
        base_config(**frozen, **{"train.head_cache_features": True, "train.run_name": "features"}),
    )
    short = {"train.head_epochs": 2, "train.fine_epochs": 1} if quick else SIX_FOUR
    two_phase = base_config(**short, **{"train.run_name": "two-phase"})
    holdout("MobileNet 0.25 two-phase (holdout, one view)", two_phase)
    folds = 2 if quick else 3
    kfold = base_config(**short, **{"train.folds": folds, "train.run_name": "kfold"})
    cv, seconds = timed(lambda: train_kfold(kfold, competition, index))
    one_view = single_view_test(cv, index, kfold).mean(axis=0)
    results.append((f"MobileNet 0.25 {folds}-fold ensemble (one view)", one_view, seconds))
    tta = predict_run(kfold, competition, index, cv)  # what `make predict` submits
    chosen = tta.postprocessing
    name = f"+ TTA ({', '.join(chosen.views)}; {chosen.average} average){clipped(chosen.clip)}"
    results.append((name, tta.test["probability"].to_numpy(), seconds))

    quick_recipe = {"train.folds": 2, **short} if quick else {}
    recipe = base_config(**quick_recipe, **{"train.run_name": "default-recipe"})
    run, seconds = timed(lambda: train_with_refits(recipe, index))
    prediction, predict_seconds = timed(lambda: predict_run(recipe, competition, index, run))
    chosen = prediction.postprocessing
    name = (
        f"finetune recipe: `train --recipe finetune` + `predict` ({recipe.train.folds} folds + "
        f"{recipe.train.refit} refit, {len(chosen.views)} views{clipped(chosen.clip)})"
    )
    results.append((name, prediction.test["probability"].to_numpy(), seconds + predict_seconds))

    recipe_seconds = seconds + predict_seconds

    def stacked(sizes: str) -> tuple[Run, float]:
        config = base_config(**{"stack.sizes": sizes})
        result, seconds = timed(lambda: fit_stack(config, competition, index))
        name = (
            f"stack: MobileNet 0.25 features at {sizes.replace(',', '+')} px (auto: chosen on OOF among 160-352) ({config.stack.views} "
            f"averaged), logistic regression per fold ({config.train.folds} folds){clipped(result.postprocessing.clip)}"
        )
        results.append((name, result.test["probability"].to_numpy(), seconds))
        return result.run, seconds

    stacked("160")  # the reference's size: what the sizes add
    stack_run, stack_seconds = stacked(base_config().stack.sizes)  # the default sizes
    pseudo = base_config(**quick_recipe, **{"train.pseudo_label": stack_run.name})
    pseudo_run, seconds = timed(lambda: train_with_refits(pseudo, index))
    taught, predict_seconds = timed(lambda: predict_run(pseudo, competition, index, pseudo_run))
    results.append(
        (
            f"default recipe + pseudo-labels from the stack (test images at confidence >= "
            f"{pseudo.train.pseudo_threshold}, hard labels)",
            taught.test["probability"].to_numpy(),
            seconds + predict_seconds + stack_seconds,
        )
    )
    blended, seconds = timed(lambda: blend(recipe, competition, [run, stack_run]))
    seconds += recipe_seconds + stack_seconds  # the blend needs both runs
    weights = ", ".join(f"{name} {w:.2f}" for name, w in blended.weights.items())
    results.append(
        (
            f"blend: default recipe + stack, weights on OOF ({weights})",
            blended.test["probability"].to_numpy(),
            seconds,
        )
    )

    base_loss = scores(results[0][1], test_labels)[0]
    rows = []
    for name, probabilities, seconds in results:
        loss, accuracy = scores(probabilities, test_labels)
        rows.append({
            "model (trained on 1,500 mini photos, scored on its 502 test photos)": name,
            "test log loss": f"{loss:.4f}",
            "test accuracy": f"{accuracy:.4f}",
            "wall time": f"{seconds:.0f} s",
            "log loss / reference": f"{loss / base_loss:.2f}",
        })  # fmt: skip
    return rows, base_loss


NO_MIRROR = {
    "augment.flip": False,
    "predict.tta": "original",
    "stack.views": "original",
}  # digits: a mirrored 2 is no 2


def set_config(real: RealSet, work: Path, **values: object) -> Config:
    """The project's configuration on a real set: the flags a user gives to match the script
    (backbone, weights, image size), and for digits that mirrored images are other images."""
    mirror = NO_MIRROR if real.name == "digits" else {}
    return project_config(real.competition, real.input_root, work, real.image_size, **{**mirror, **values})


def test_probabilities(run: Run, real: RealSet, ids: pd.Series) -> np.ndarray:
    """The run's post-processed test probabilities in the order of `ids`."""
    saved = run.read_test_predictions()
    return from_columns(saved.set_index(saved["id"].astype(str)).loc[ids.astype(str)])


def set_ladder(name: str, seeds: int) -> tuple[list[Row], str]:
    """On one real set, beside each other in this run: the hand-written script, the hand-written
    stack, and the default `train` + `predict` (recipe auto) for `seeds` seeds; a row with a
    longer budget when the default left a member out. Returns the rows and the portfolios' lines."""
    from pipeline import flow

    work = layout.bench_dir() / f"sets-{name}"
    shutil.rmtree(work / "runs", ignore_errors=True)
    shutil.rmtree(work / "data", ignore_errors=True)
    real = SETS[name](work)
    index = flow.index(set_config(real, work))
    truth = real.solution.loc[index.test["id"].astype(str)].to_numpy()
    paths = index.train["path"].astype(str).tolist()
    test_paths = index.test["path"].astype(str).tolist()
    labels = index.train["label"].to_numpy()
    classes = int(labels.max()) + 1
    results: list[tuple[str, np.ndarray, float]] = []
    script = f"{'many-class (softmax, 8 + 8 epochs) ' if classes > 2 else ''}keras-io MobileNet 0.25 script"
    probabilities, seconds = timed(
        lambda: handwritten.train_and_predict(
            paths, labels, test_paths, WEIGHTS, size=real.image_size, classes=classes
        )
    )
    results.append((f"reference: hand-written {script}, {real.image_size} px", probabilities, seconds))
    probabilities, seconds = timed(
        lambda: handwritten_stack.stack_and_predict(paths, labels, test_paths, WEIGHTS)
    )
    results.append(
        (
            "reference: hand-written stack, features at 224+288+352 px, LogisticRegressionCV",
            probabilities,
            seconds,
        )
    )
    notes = []

    def auto(label: str, **values: object) -> dict:
        config = set_config(real, work, **values)
        shutil.rmtree(layout.features_dir(config), ignore_errors=True)  # each row computes its own features
        (run, _), seconds = timed(lambda: (flow.train(config, report_after=False), flow.predict(config)))
        results.append((label, test_probabilities(run, real, index.test["id"]), seconds))
        record = run.read_portfolio()
        members = ", ".join(
            f"{m['name']} ({m.get('status')}, {m.get('seconds', '-')} s, weight {m.get('weight', 0)})"
            for m in record["members"]
        )
        notes.append(
            f"- {label}: {members}; OOF {record['metric']} {record['oof']:.4f}, nested {record['selected_on']} {record['nested_oof']:.4f}"
        )
        return record

    skipped = False
    for seed in range(seeds):
        record = auto(
            f"default `train` + `predict` (recipe auto), seed {42 + seed}",
            **{"data.seed": 42 + seed, "train.run_name": f"auto-seed{42 + seed}"},
        )
        skipped |= any(m.get("status") == "not started" for m in record["members"])
    if skipped:
        auto(
            "recipe auto with --time-budget 90m (every member)",
            **{"train.time_budget": 5400, "train.run_name": "auto-90m"},
        )
    reference_loss, reference_accuracy = real_scores(results[0][1], truth)
    rows = []
    for label, probabilities, seconds in results:
        loss, accuracy = real_scores(probabilities, truth)
        rows.append({
            f"{name}: {real.note}": label,
            "test log loss": f"{loss:.4f}",
            "test accuracy": f"{accuracy:.4f}",
            "wall time": f"{seconds:.0f} s",
            "log loss / script": f"{loss / reference_loss:.2f}",
            "error / script": f"{(1 - accuracy) / max(1 - reference_accuracy, 1e-9):.2f}",
            "time / script": f"{seconds / results[0][2]:.1f}x",
        })  # fmt: skip
    return rows, "\n".join(notes)


def main() -> None:
    from benchmarks.bench import machine, markdown_table

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer epochs, one seed: a smoke run")
    parser.add_argument("--seeds", type=int, default=2, help="seeds per ablation row (default: 2)")
    parser.add_argument("--ablations-only", action="store_true", help="the reference and the ablations")
    parser.add_argument("--only", default="", help="only the ablation rows whose name contains this")
    parser.add_argument(
        "--sets",
        default=",".join(SETS),
        help=f"real sets of the auto recipe's ladders (default: {','.join(SETS)}; '' = none)",
    )
    parser.add_argument("--sets-only", action="store_true", help="the real sets' ladders alone")
    args = parser.parse_args()
    started = time.perf_counter()
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    sections = []
    for name in [n for n in args.sets.split(",") if n]:
        rows, notes = set_ladder(name, 1 if args.quick else 2)
        sections.append(f"## {name}\n\n{markdown_table(rows)}\n\nPortfolios:\n{notes}\n")
        print(sections[-1], flush=True)
    if args.sets_only:
        report = f"# Quality ladders of the real sets {stamp}\n\nMachine: {machine()}\n\n" + "\n".join(
            sections
        )
        report += f"\nTotal {time.perf_counter() - started:.0f} s.\n"
        print(report)
        layout.bench_dir().mkdir(parents=True, exist_ok=True)
        (layout.bench_dir() / f"quality-sets-{stamp}.md").write_text(report)
        return
    index, test_labels = prepare()
    if args.ablations_only:
        probabilities, seconds = reference(index)
        reference_loss = scores(probabilities, test_labels)[0]
        table = f"Reference (hand-written script): test log loss {reference_loss:.4f}, {seconds:.0f} s"
    else:
        rows, reference_loss = ladder(index, test_labels, args.quick)
        table = markdown_table(rows)
    seeds = 1 if args.quick else args.seeds
    ablation = markdown_table(ablations(index, test_labels, reference_loss, seeds, args.only))
    report = (
        f"# Quality ladder {'(quick) ' if args.quick else ''}{stamp}\n\nMachine: {machine()}\n\n"
        + "\n".join(sections)
        + f"\n## mini: the ladder of single techniques\n\n{table}\n\n"
        f"## Ablations ({seeds} seed(s) a row: mean (min-max))\n\n{ablation}\n\n"
        f"Total {time.perf_counter() - started:.0f} s. Wall time of a row: its training (k-fold: all folds); "
        "the TTA row reuses the k-fold run's models.\n"
    )
    print(report)
    WORK.mkdir(parents=True, exist_ok=True)
    (layout.bench_dir() / f"quality-{stamp}.md").write_text(report)


if __name__ == "__main__":
    main()
