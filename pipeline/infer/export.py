"""One self-contained model of a finished, predicted run: its members under its TTA views,
averaged in its space, post-processed as chosen on OOF, inside one Keras model that takes
resized pixels and gives one probability per class. Saved as `.keras` (Keras, with this package)
and as a TensorFlow SavedModel (three lines, without it); TFLite where the converter takes it."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import tensorflow as tf
from keras import ops

from pipeline.atomic import write_text
from pipeline.competitions import Competition
from pipeline.config import Config, ConfigError
from pipeline.infer.tta import VIEWS
from pipeline.metrics import EPSILON
from pipeline.model.classifier import load_trained_model
from pipeline.model.families import family_of
from pipeline.registry import get_backbone
from pipeline.run import PostProcessing, Run

SAVED_MODEL = "saved_model"
KERAS_FILE = "ensemble.keras"
TFLITE_FILE = "ensemble.tflite"
CLASSES_FILE = "classes.json"
USAGE_FILE = "README.txt"


@keras.saving.register_keras_serializable(package="pipeline")
class View(keras.layers.Layer):
    """One TTA view of a batch of images, exactly as `predict` computes it (pipeline.infer.tta)."""

    def __init__(self, view: str, **kwargs: object):
        super().__init__(**kwargs)
        self.view = view

    def call(self, images: tf.Tensor) -> tf.Tensor:
        return VIEWS[self.view](images)

    def get_config(self) -> dict:
        return {**super().get_config(), "view": self.view}


def _as_classes(p: keras.KerasTensor) -> keras.KerasTensor:
    """A sigmoid's (batch, 1) as (batch, 2): P(negative), P(positive); a softmax's as it is."""
    return ops.concatenate([1 - p, p], axis=-1) if p.shape[-1] == 1 else p


def ensemble_model(members: list[keras.Model], chosen: PostProcessing, image_size: int) -> keras.Model:
    """Every member under every view, averaged in `chosen.average` space, then clipped or
    temperature-scaled as `chosen` says: (batch, size, size, 3) pixels -> (batch, classes)."""
    inputs = keras.Input((image_size, image_size, 3), name="image")
    outputs = [
        _as_classes(member(View(view, name=f"view_{m}_{view}")(inputs)))
        for m, member in enumerate(members)
        for view in chosen.views
    ]
    stacked = ops.clip(ops.stack(outputs, axis=0), EPSILON, 1 - EPSILON)
    if chosen.average == "logit":  # binary: mean log-odds; many: mean log-probability, renormalised
        logs = ops.log(stacked)
        if stacked.shape[-1] == 2:
            odds = ops.mean(logs[..., 1] - logs[..., 0], axis=0)
            p = ops.sigmoid(odds)
            p = ops.stack([1 - p, p], axis=-1)
        else:
            p = ops.softmax(ops.mean(logs, axis=0), axis=-1)
    else:
        p = ops.mean(stacked, axis=0)
    if chosen.clip is not None:
        positive = ops.clip(p[:, 1], chosen.clip, 1 - chosen.clip)
        p = ops.stack([1 - positive, positive], axis=-1)
    if chosen.temperature is not None:
        p = ops.softmax(ops.log(ops.clip(p, EPSILON, 1.0)) / chosen.temperature, axis=-1)
    return keras.Model(inputs, p, name="ensemble")


def export_run(config: Config, competition: Competition, run: Run, out: Path) -> Path:
    """Write the run's ensemble into `out` (SavedModel, .keras, TFLite where possible, the classes
    and how to use it); return `out`."""
    chosen = run.read_postprocessing()
    if chosen is None:
        raise ConfigError(f"run {run.name} has not predicted yet: run `predict --run {run.name}` first")
    family_of(get_backbone(config.model.backbone))  # its layers registered: the saved models load
    names = set(chosen.models)
    members = [m for m in (*run.members(), *run.refit_members()) if m.name in names] or run.members()
    loaded = []
    for member in members:  # each under its own name: a model's layers are named once
        network = load_trained_model(member.model_path)
        network.name = f"member_{member.name.replace('-', '_')}"
        loaded.append(network)
    model = ensemble_model(loaded, chosen, config.data.image_size)
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / KERAS_FILE)
    model.export(str(out / SAVED_MODEL), format="tf_saved_model", verbose=False)
    written = [SAVED_MODEL, KERAS_FILE]
    try:
        converter = tf.lite.TFLiteConverter.from_saved_model(str(out / SAVED_MODEL))
        (out / TFLITE_FILE).write_bytes(converter.convert())
        written.append(TFLITE_FILE)
    except Exception as error:  # the converter refuses some ops; the SavedModel is the one that counts
        print(f"No TFLite file: the converter refused this model ({str(error).splitlines()[0][:160]})")
    write_text(out / CLASSES_FILE, json.dumps(list(competition.classes)) + "\n")
    size, mode = config.data.image_size, config.data.resize_mode
    write_text(
        out / USAGE_FILE,
        f"The ensemble of run {run.name} ({len(members)} model(s) x views {', '.join(chosen.views)}, "
        f"{chosen.average} averaging, post-processed as chosen on out-of-fold predictions).\n"
        f"Input: float32 RGB pixels in [0, 255], shape (batch, {size}, {size}, 3) (resized with mode {mode}).\n"
        f"Output: one probability per class, in the order of {CLASSES_FILE}.\n\n"
        "    import tensorflow as tf\n"
        f"    model = tf.saved_model.load('{SAVED_MODEL}')\n"
        "    probabilities = model.serve(images)\n",
    )
    print(
        f"Exported {run.name} ({len(members)} model(s) x {len(chosen.views)} view(s)) to {out}: {', '.join(written)}"
    )
    return out
