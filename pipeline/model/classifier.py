"""The classifier: [augmentation] -> preprocessing -> backbone (inference mode) -> dropout -> dense.

Importing this module registers the project's own layers, so saved `model.keras` files load.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import keras

from pipeline.config import Config
from pipeline.data.augment import build_augmenter
from pipeline.model import layers  # noqa: F401  (registers the layers saved model.keras files use)
from pipeline.model.backbones import build_feature_extractor
from pipeline.model.families import family_of
from pipeline.registry import Backbone, get_backbone

BACKBONE_LAYER = "backbone"
HEAD_DROPOUT = "head_dropout"
OUTPUT = "prediction"


@dataclass
class Classifier:
    """The trainable model and a handle on its backbone (for freezing and unfreezing)."""

    model: keras.Model
    backbone: keras.Model
    spec: Backbone


def build_classifier(config: Config, num_classes: int) -> Classifier:
    """Build the network for `config`; call inside the distribution strategy's scope.

    The backbone is always called with training=False, so its BatchNormalization layers stay in
    inference mode in both phases, as the Keras fine-tuning guide recommends. The output layer is
    float32 under mixed precision.
    """
    spec = get_backbone(config.model.backbone)
    size = config.data.image_size
    inputs = keras.Input((size, size, 3), name="image")
    x = inputs
    if config.augment.where == "model":  # random layers are active in training only
        augmenter = build_augmenter(config.augment, size, config.data.seed)
        x = x if augmenter is None else augmenter(x)
    preprocessing = family_of(spec).preprocessing(spec)
    x = x if preprocessing is None else preprocessing(x)
    backbone = build_feature_extractor(spec, size, config.model.weights)
    backbone.name = BACKBONE_LAYER
    x = backbone(x, training=False) if spec.pretrained else backbone(x)
    x = keras.layers.Dropout(config.model.dropout, name=HEAD_DROPOUT)(x)
    units, activation = (1, "sigmoid") if num_classes == 2 else (num_classes, "softmax")
    outputs = keras.layers.Dense(units, activation=activation, dtype="float32", name=OUTPUT)(x)
    model = keras.Model(inputs, outputs, name=f"{spec.name.replace('-', '_')}_classifier")
    return Classifier(model, backbone, spec)


def load_trained_model(path: Path) -> keras.Model:
    """A saved classifier for inference: without its optimizer state (it only predicts), without
    Keras' warning about the input structure of a nested keras-hub backbone, called by name."""
    from pipeline.model.families import family_of  # noqa: F401  (families register their layers)

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The structure of `inputs` doesn't match")
        return keras.saving.load_model(path, compile=False)
