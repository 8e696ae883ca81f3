"""Two-phase transfer learning into a resumable run folder, as in the keras-io fine-tuning example:

    classifier = build_classifier(config)          # backbone frozen, new head
    compile_model(...)                             # AdamW (no decay on biases, norms), cross-entropy
    fit_head(...)                                  # phase "head": the head at a high learning rate
    unfreeze_model(classifier, config)             # the top blocks (BatchNormalization stays frozen)
    fine_tune(...)                                 # phase "fine": fine_tune_schedule: warmup, cosine
    evaluate(...)                                  # validation scores, model, predictions

Early stopping restores the best weights in each phase; both phases share one epoch timeline.
Resuming lives in one place, `Phases`: a finished phase is not run again (its weights are loaded),
a phase killed mid-way resumes from its last epoch (keras.callbacks.BackupAndRestore), and a
finished run is not trained again.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from pipeline import layout
from pipeline.acquire.index import ImageIndex
from pipeline.atomic import write_atomically
from pipeline.competitions import Competition
from pipeline.config import Config
from pipeline.data.augment import augments
from pipeline.data.input_pipeline import encode_labels, make_dataset
from pipeline.fit.class_weights import class_weights
from pipeline.fit.class_weights import describe as describe_weights
from pipeline.fit.metrics import as_columns
from pipeline.fit.metrics import scores as score_predictions
from pipeline.fit.phases import Phases, best_val_loss, fit_phase, fit_verbosity, phase_history
from pipeline.fit.splits import holdout_split
from pipeline.model.backbones import unfreeze_top_blocks
from pipeline.model.classifier import HEAD_DROPOUT, OUTPUT, Classifier, build_classifier
from pipeline.model.devices import DeviceSetup, setup_devices
from pipeline.run import Run


def train_holdout(
    config: Config,
    competition: Competition,
    index: ImageIndex,
    callbacks: Sequence[keras.callbacks.Callback] = (),
) -> Run:
    """Train one run on the stratified holdout split into runs/<competition>/<run name>-holdout/."""
    train, validation = holdout_split(config, index)
    return train_run(config, competition, train, validation, Run(layout.holdout_run_dir(config)), callbacks)


def uses_feature_cache(config: Config, pretrained: bool) -> bool:
    """True when the head phase trains on precomputed backbone features: a frozen pretrained
    backbone, and either no augmentation at all or train.head_cache_features set."""
    return pretrained and (config.train.head_cache_features or not augments(config.augment))


def _head_on_features(
    classifier: Classifier,
    train: pd.DataFrame,
    validation: pd.DataFrame | None,
    config: Config,
    num_classes: int,
) -> tuple[keras.Model, tf.data.Dataset, tf.data.Dataset | None]:
    """The head alone (its layers shared with the classifier, so training it trains the classifier)
    and datasets of pooled backbone features: each image runs through the frozen backbone once
    ("bottleneck features") instead of once per epoch. Images are not augmented."""
    dropout, output = classifier.model.get_layer(HEAD_DROPOUT), classifier.model.get_layer(OUTPUT)
    extractor = keras.Model(classifier.model.input, dropout.input)
    start = time.perf_counter()

    def features(frame: pd.DataFrame | None, shuffle: bool) -> tf.data.Dataset | None:
        if frame is None:
            return None
        images = make_dataset(frame[["path"]], config, training=False)
        values = np.asarray(extractor.predict(images, verbose=0), dtype=np.float32)
        dataset = tf.data.Dataset.from_tensor_slices((values, encode_labels(frame["label"], num_classes)))
        if shuffle:
            dataset = dataset.shuffle(len(values), seed=config.data.seed, reshuffle_each_iteration=True)
        return dataset.batch(config.data.batch_size).prefetch(tf.data.AUTOTUNE)

    train_features, val_features = features(train, shuffle=True), features(validation, shuffle=False)
    seconds = time.perf_counter() - start
    count = len(train) + (0 if validation is None else len(validation))
    print(f"phase head: backbone features of {count:,} images, once, in {seconds:.0f} s")
    inputs = keras.Input(tuple(dropout.input.shape[1:]), name="features")
    return keras.Model(inputs, output(dropout(inputs)), name="head"), train_features, val_features


def predict_probabilities(model: keras.Model, dataset: tf.data.Dataset) -> np.ndarray:
    """P(positive class) for every image of an evaluation dataset, in order; with more than two
    classes every class's probability, (images, classes)."""
    predicted = np.asarray(model.predict(dataset, verbose=0), dtype=np.float64)
    return predicted[:, -1] if predicted.shape[-1] == 1 else predicted


@dataclass(frozen=True)
class TrainingContext:
    """What every phase of one run shares: its images as datasets, devices, and how to log."""

    config: Config
    batched: Config  # the configuration with the global batch (per-device batch x replicas)
    train: pd.DataFrame
    validation: pd.DataFrame | None  # None for a model refit on all the images
    train_ds: tf.data.Dataset
    val_ds: tf.data.Dataset | None
    num_classes: int
    devices: DeviceSetup
    run: Run
    callbacks: Sequence[keras.callbacks.Callback]
    verbose: int
    class_weight: dict[int, float] | None  # train.class_weight resolved on this run's training images

    def compile(
        self, model: keras.Model, learning_rate: float | keras.optimizers.schedules.LearningRateSchedule
    ) -> None:
        """Compile `model` with the recipe's optimizer, loss and metrics on these devices."""
        with self.devices.scope():
            compile_model(model, self.config, learning_rate, self.num_classes, self.devices.jit_compile)

    def fit(self, phase: str, model: keras.Model, train_ds, val_ds, first_epoch: int, epochs: int) -> int:
        """Fit one phase of this run; return the epoch reached."""
        return fit_phase(
            phase,
            model,
            train_ds,
            val_ds,
            first_epoch,
            epochs,
            self.run,
            self.config,
            self.callbacks,
            self.verbose,
            self.class_weight,
        )


def _prepare(
    config: Config,
    competition: Competition,
    train: pd.DataFrame,
    validation: pd.DataFrame | None,
    run: Run,
    callbacks: Sequence[keras.callbacks.Callback],
    verbose: int,
) -> TrainingContext:
    """Seeds, devices and datasets of a run."""
    keras.utils.set_random_seed(config.data.seed)
    if config.data.deterministic and keras.backend.backend() == "tensorflow":
        tf.config.experimental.enable_op_determinism()  # JAX's CPU and TPU ops are deterministic already
    devices = setup_devices(config.train)
    validating = 0 if validation is None else len(validation)
    print(f"Run {run.name}: {len(train):,} training and {validating:,} validation images on {devices}")
    num_classes = len(competition.classes)
    weights = class_weights(train["label"].to_numpy(), num_classes, config.train.class_weight)
    if weights is not None:
        print(describe_weights(weights, list(competition.classes)))
    batched = dataclasses.replace(
        config, data=dataclasses.replace(config.data, batch_size=config.data.batch_size * devices.replicas)
    )
    return TrainingContext(
        config,
        batched,
        train,
        validation,
        make_dataset(train, batched, training=True, num_classes=num_classes),
        None
        if validation is None
        else make_dataset(validation, batched, training=False, num_classes=num_classes),
        num_classes,
        devices,
        run,
        callbacks,
        verbose,
        weights,
    )


# --- the recipe: optimizer, loss and schedule, then the phases ----------------------------------
def compile_model(
    model: keras.Model,
    config: Config,
    learning_rate: float | keras.optimizers.schedules.LearningRateSchedule,
    num_classes: int,
    jit_compile: bool,
) -> None:
    """Compile with the recipe's optimizer (AdamW, no decay on biases and norms), loss and metrics."""
    optimizer = keras.optimizers.AdamW(
        learning_rate=learning_rate, weight_decay=config.train.weight_decay, use_ema=config.train.ema
    )
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


def fit_head(classifier: Classifier, context: TrainingContext) -> int:
    """Phase "head": the backbone frozen (the small CNN trains whole), the head at a high learning
    rate; on backbone features computed once when nothing augments. Returns the epoch reached."""
    config = context.config
    classifier.backbone.trainable = not classifier.spec.pretrained
    model, train_ds, val_ds = classifier.model, context.train_ds, context.val_ds
    if uses_feature_cache(config, classifier.spec.pretrained):
        model, train_ds, val_ds = _head_on_features(
            classifier, context.train, context.validation, context.batched, context.num_classes
        )
    context.compile(model, config.train.head_learning_rate)
    return context.fit("head", model, train_ds, val_ds, 0, config.train.head_epochs)


def unfreeze_model(classifier: Classifier, config: Config) -> None:
    """Make the top `train.unfreeze` blocks of the backbone trainable (BatchNormalization stays frozen)."""
    blocks = unfreeze_top_blocks(classifier.backbone, config.train.unfreeze, classifier.spec)
    print(f"phase fine: unfreezing {len(blocks)} block(s): {', '.join(blocks)}")


def fine_tune(classifier: Classifier, context: TrainingContext, first_epoch: int) -> int:
    """Phase "fine": the unfrozen blocks and the head at a low learning rate (warmup, cosine decay).
    When fine-tuning never beats the head phase on validation loss, the head's weights are kept.
    Returns the epoch reached."""
    config, run = context.config, context.run
    steps = config.train.fine_epochs * math.ceil(len(context.train) / context.batched.data.batch_size)
    context.compile(classifier.model, fine_tune_schedule(config, steps))
    reached = context.fit(
        "fine", classifier.model, context.train_ds, context.val_ds, first_epoch, config.train.fine_epochs
    )
    head_best, fine_best = best_val_loss(run, "head"), best_val_loss(run, "fine")
    if context.validation is not None and fine_best > head_best:
        print(f"phase fine: best val_loss {fine_best:.4f} > head's {head_best:.4f}; keeping the head weights")
        classifier.model.load_weights(run.weights_path("head"))
    return reached


def evaluate(classifier: Classifier, context: TrainingContext, seconds_before: float) -> dict[str, float]:
    """Score the validation images and save the model, its predictions, the history and, last,
    the metrics that mark the run finished."""
    run, validation = context.run, context.validation
    write_atomically(run.model_path, classifier.model.save)
    run.write_history(phase_history(run))
    scores: dict[str, float] = {}
    if validation is not None:
        probabilities = predict_probabilities(classifier.model, context.val_ds)
        scores = score_predictions(validation["label"].to_numpy(), probabilities)
        run.write_validation(
            pd.DataFrame({"id": validation["id"], "label": validation["label"], **as_columns(probabilities)})
        )
    scores["seconds"] = round(time.perf_counter() - seconds_before, 1)
    run.write_metrics(scores)
    shown = ", ".join(f"{k} {v:.4f}" for k, v in scores.items() if k != "seconds")
    print(
        f"Validation: {shown}; total {scores['seconds']:.0f} s"
        if shown
        else f"Trained in {scores['seconds']:.0f} s"
    )
    return scores


def train_run(
    config: Config,
    competition: Competition,
    train: pd.DataFrame,
    validation: pd.DataFrame | None,
    run: Run,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    verbose: int | None = None,
) -> Run:
    """Train `config`'s recipe on `train`, score on `validation`, and leave everything in `run`.
    Without validation images (a refit model) each phase runs its full epochs."""
    if run.is_finished:
        print(f"{run.path} is finished; not training again (delete the folder to retrain).")
        return run
    started = time.perf_counter()
    run.save_config(config)
    verbose = fit_verbosity(sys.stdout.isatty()) if verbose is None else verbose
    context = _prepare(config, competition, train, validation, run, callbacks, verbose)
    with context.devices.scope():
        classifier = build_classifier(config, context.num_classes)
    phases = Phases(run, classifier.model)

    phases.run_phase("head", lambda: fit_head(classifier, context))
    if classifier.spec.pretrained and config.train.fine_epochs > 0:
        unfreeze_model(classifier, config)
        phases.run_phase("fine", lambda: fine_tune(classifier, context, phases.reached))
    evaluate(classifier, context, started)
    return run
