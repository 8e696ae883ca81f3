"""Two-phase transfer learning into a resumable run folder.

Phase "head": the backbone frozen, the head trained at a high learning rate. Phase "fine": the top
blocks unfrozen (BatchNormalization stays frozen), AdamW with warmup then cosine decay. Early
stopping restores the best weights in each phase; both phases share one epoch timeline. A run
killed mid-phase resumes from its last epoch (keras.callbacks.BackupAndRestore); a finished run
(metrics.json present) is not trained again.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from pipeline import layout
from pipeline.acquire.index import ImageIndex
from pipeline.competitions import Competition
from pipeline.config import Config
from pipeline.data.input_pipeline import encode_labels, make_dataset
from pipeline.fit.metrics import binary_scores
from pipeline.fit.splits import holdout_split
from pipeline.model.backbones import unfreeze_top_blocks
from pipeline.model.classifier import HEAD_DROPOUT, OUTPUT, Classifier, build_classifier
from pipeline.model.devices import setup_devices

PHASES = ("head", "fine")


@dataclass(frozen=True)
class RunResult:
    """A finished run: its folder, validation metrics and the history of both phases."""

    run_dir: Path
    metrics: dict[str, float]
    history: pd.DataFrame


def fit_verbosity(interactive: bool) -> int:
    """Keras `verbose`: the per-step progress bar on a terminal, one line per epoch in a log file."""
    return 1 if interactive else 2


def train_holdout(
    config: Config,
    competition: Competition,
    index: ImageIndex,
    callbacks: Sequence[keras.callbacks.Callback] = (),
) -> RunResult:
    """Train one run on the stratified holdout split into runs/<competition>/<run name>-holdout/."""
    train, validation = holdout_split(config, index)
    return train_run(config, competition, train, validation, layout.holdout_run_dir(config), callbacks)


def _compile(
    model: keras.Model,
    config: Config,
    learning_rate: float | keras.optimizers.schedules.LearningRateSchedule,
    num_classes: int,
    jit_compile: bool,
) -> None:
    optimizer = keras.optimizers.AdamW(learning_rate=learning_rate, weight_decay=config.train.weight_decay)
    optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    if num_classes == 2:
        loss = keras.losses.BinaryCrossentropy(label_smoothing=config.train.label_smoothing)
        metrics = [keras.metrics.BinaryAccuracy(name="accuracy"), keras.metrics.AUC(name="auc")]
    else:
        loss = keras.losses.CategoricalCrossentropy(label_smoothing=config.train.label_smoothing)
        metrics = [keras.metrics.CategoricalAccuracy(name="accuracy")]
    model.compile(
        optimizer=optimizer,
        loss=loss,
        metrics=metrics,
        jit_compile=jit_compile,
        steps_per_execution=config.train.steps_per_execution,
    )


def fine_tune_schedule(config: Config, steps: int) -> keras.optimizers.schedules.LearningRateSchedule:
    """Linear warmup to fine_learning_rate over warmup_fraction of `steps`, then cosine decay."""
    warmup = int(config.train.warmup_fraction * steps)
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=config.train.fine_learning_rate / 100
        if warmup
        else config.train.fine_learning_rate,
        decay_steps=max(1, steps - warmup),
        warmup_target=config.train.fine_learning_rate if warmup else None,
        warmup_steps=warmup,
    )


def _read_state(run_dir: Path) -> dict[str, int]:
    path = run_dir / "state.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _write_state(run_dir: Path, state: dict[str, int]) -> None:
    (run_dir / "state.json").write_text(json.dumps(state))


def _fit_phase(
    phase: str,
    model: keras.Model,
    train_ds: tf.data.Dataset,
    val_ds: tf.data.Dataset,
    first_epoch: int,
    epochs: int,
    run_dir: Path,
    config: Config,
    extra: Sequence[keras.callbacks.Callback],
    verbose: int,
) -> int:
    """Fit one phase; return the epoch the timeline has reached after it."""
    callbacks = [
        keras.callbacks.BackupAndRestore(str(run_dir / "backup" / phase), delete_checkpoint=True),
        keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=config.train.patience, restore_best_weights=True, verbose=0
        ),
        keras.callbacks.CSVLogger(str(run_dir / f"history-{phase}.csv"), append=True),
        keras.callbacks.TensorBoard(str(run_dir / "tensorboard"), write_graph=False),
        *extra,
    ]
    start = time.perf_counter()
    history = model.fit(
        train_ds,
        validation_data=val_ds,
        initial_epoch=first_epoch,
        epochs=first_epoch + epochs,
        callbacks=callbacks,
        verbose=verbose,
        shuffle=False,  # the tf.data pipeline shuffles
    )
    reached = history.epoch[-1] + 1 if history.epoch else first_epoch + epochs
    ran_from = history.epoch[0] + 1 if history.epoch else reached  # after a resume: the epochs run now
    losses = history.history.get("val_loss", [])
    best = f"best val_loss {min(losses):.4f}" if losses else "resumed at its end"
    print(f"phase {phase}: epochs {ran_from}-{reached}, {best}, {time.perf_counter() - start:.0f} s")
    return reached


def _history(run_dir: Path) -> pd.DataFrame:
    frames = []
    for phase in PHASES:
        path = run_dir / f"history-{phase}.csv"
        if path.is_file():
            frame = pd.read_csv(path).drop_duplicates("epoch", keep="last")
            frames.append(frame.assign(phase=phase))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def uses_feature_cache(config: Config, pretrained: bool) -> bool:
    """True when the head phase trains on precomputed backbone features: a frozen pretrained
    backbone, and either no augmentation at all or train.head_cache_features set."""
    if not pretrained:
        return False
    aug = config.augment
    factors = (
        aug.rotation,
        aug.zoom,
        aug.translation,
        aug.contrast,
        aug.brightness,
        aug.crop,
        aug.randaugment_magnitude,
        aug.mixup_alpha,
        aug.cutmix_alpha,
    )
    return config.train.head_cache_features or not (aug.flip or any(f > 0 for f in factors))


def _head_on_features(
    classifier: Classifier, train: pd.DataFrame, validation: pd.DataFrame, config: Config, num_classes: int
) -> tuple[keras.Model, tf.data.Dataset, tf.data.Dataset]:
    """The head alone (its layers shared with the classifier, so training it trains the classifier)
    and datasets of pooled backbone features: each image runs through the frozen backbone once
    ("bottleneck features") instead of once per epoch. Images are not augmented."""
    dropout, output = classifier.model.get_layer(HEAD_DROPOUT), classifier.model.get_layer(OUTPUT)
    extractor = keras.Model(classifier.model.input, dropout.input)
    start = time.perf_counter()

    def features(frame: pd.DataFrame, shuffle: bool) -> tf.data.Dataset:
        images = make_dataset(frame[["path"]], config, training=False)
        values = np.asarray(extractor.predict(images, verbose=0), dtype=np.float32)
        dataset = tf.data.Dataset.from_tensor_slices((values, encode_labels(frame["label"], num_classes)))
        if shuffle:
            dataset = dataset.shuffle(len(values), seed=config.data.seed, reshuffle_each_iteration=True)
        return dataset.batch(config.data.batch_size).prefetch(tf.data.AUTOTUNE)

    train_features, val_features = features(train, shuffle=True), features(validation, shuffle=False)
    seconds = time.perf_counter() - start
    print(
        f"phase head: backbone features of {len(train) + len(validation):,} images, once, in {seconds:.0f} s"
    )
    inputs = keras.Input(tuple(dropout.input.shape[1:]), name="features")
    return keras.Model(inputs, output(dropout(inputs)), name="head"), train_features, val_features


def _best_val_loss(run_dir: Path, phase: str) -> float:
    path = run_dir / f"history-{phase}.csv"
    losses = pd.read_csv(path)["val_loss"] if path.is_file() else pd.Series(dtype=float)
    return float(losses.min()) if len(losses) else math.inf


def predict_probabilities(model: keras.Model, dataset: tf.data.Dataset) -> np.ndarray:
    """P(positive class) for every image of an evaluation dataset, in order."""
    return np.asarray(model.predict(dataset, verbose=0), dtype=np.float64)[:, -1]


def train_run(
    config: Config,
    competition: Competition,
    train: pd.DataFrame,
    validation: pd.DataFrame,
    run_dir: Path,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    verbose: int | None = None,
) -> RunResult:
    """Train `config`'s recipe on `train`, score on `validation`, and leave everything in `run_dir`."""
    metrics_path = run_dir / layout.FINISHED
    verbose = fit_verbosity(sys.stdout.isatty()) if verbose is None else verbose
    if metrics_path.is_file():
        print(f"{run_dir} is finished; not training again (delete the folder to retrain).")
        return RunResult(run_dir, json.loads(metrics_path.read_text()), _history(run_dir))
    started = time.perf_counter()
    run_dir.mkdir(parents=True, exist_ok=True)
    config.save(run_dir / "config.json")
    keras.utils.set_random_seed(config.data.seed)
    if config.data.deterministic and keras.backend.backend() == "tensorflow":
        tf.config.experimental.enable_op_determinism()  # JAX's CPU and TPU ops are deterministic already
    devices = setup_devices(config.train)
    print(
        f"Run {run_dir.name}: {len(train):,} training and {len(validation):,} validation images on {devices}"
    )
    num_classes = len(competition.classes)
    batched = dataclasses.replace(
        config, data=dataclasses.replace(config.data, batch_size=config.data.batch_size * devices.replicas)
    )
    train_ds = make_dataset(train, batched, training=True, num_classes=num_classes)
    val_ds = make_dataset(validation, batched, training=False, num_classes=num_classes)
    with devices.scope():
        classifier = build_classifier(config, num_classes)
    state = _read_state(run_dir)

    classifier.backbone.trainable = not classifier.spec.pretrained  # the small CNN trains whole
    if "head" not in state:
        head_model, head_train, head_val = classifier.model, train_ds, val_ds
        if uses_feature_cache(config, classifier.spec.pretrained):
            head_model, head_train, head_val = _head_on_features(
                classifier, train, validation, batched, num_classes
            )
        with devices.scope():
            _compile(head_model, config, config.train.head_learning_rate, num_classes, devices.jit_compile)
        reached = _fit_phase(
            "head",
            head_model,
            head_train,
            head_val,
            0,
            config.train.head_epochs,
            run_dir,
            config,
            callbacks,
            verbose,
        )
        classifier.model.save_weights(run_dir / "head.weights.h5")
        state = {"head": reached}
        _write_state(run_dir, state)
    else:
        classifier.model.load_weights(run_dir / "head.weights.h5")

    if classifier.spec.pretrained and config.train.fine_epochs > 0 and "fine" not in state:
        blocks = unfreeze_top_blocks(classifier.backbone, config.train.unfreeze)
        print(f"phase fine: unfreezing {len(blocks)} block(s): {', '.join(blocks)}")
        steps = config.train.fine_epochs * math.ceil(len(train) / batched.data.batch_size)
        with devices.scope():
            _compile(
                classifier.model, config, fine_tune_schedule(config, steps), num_classes, devices.jit_compile
            )
        reached = _fit_phase(
            "fine",
            classifier.model,
            train_ds,
            val_ds,
            state["head"],
            config.train.fine_epochs,
            run_dir,
            config,
            callbacks,
            verbose,
        )
        head_best, fine_best = _best_val_loss(run_dir, "head"), _best_val_loss(run_dir, "fine")
        if fine_best > head_best:  # fine-tuning never beat the head phase: keep the head's weights
            print(
                f"phase fine: best val_loss {fine_best:.4f} > head's {head_best:.4f}; keeping the head weights"
            )
            classifier.model.load_weights(run_dir / "head.weights.h5")
        classifier.model.save_weights(run_dir / "fine.weights.h5")
        state["fine"] = reached
        _write_state(run_dir, state)
    elif "fine" in state:
        classifier.model.load_weights(run_dir / "fine.weights.h5")

    probabilities = predict_probabilities(classifier.model, val_ds)
    scores = binary_scores(validation["label"].to_numpy(), probabilities)
    classifier.model.save(run_dir / "model.keras")
    pd.DataFrame({"id": validation["id"], "label": validation["label"], "probability": probabilities}).to_csv(
        run_dir / "validation_predictions.csv", index=False
    )
    history = _history(run_dir)
    history.to_csv(run_dir / "history.csv", index=False)
    scores["seconds"] = round(time.perf_counter() - started, 1)
    metrics_path.write_text(json.dumps(scores, indent=2) + "\n")  # written last: marks the run finished
    print(
        "Validation: "
        + ", ".join(f"{k} {v:.4f}" for k, v in scores.items() if k != "seconds")
        + f"; total {scores['seconds']:.0f} s"
    )
    return RunResult(run_dir, scores, history)
