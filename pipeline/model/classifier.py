"""The classifier: [augmentation] -> preprocessing -> backbone (inference mode) -> dropout -> dense.

Importing this module registers the project's own layers, so saved `model.keras` files load.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
from keras import ops

from pipeline.config import Config
from pipeline.data.augment import build_augmenter
from pipeline.model.backbones import build_feature_extractor
from pipeline.registry import Backbone, get_backbone

BACKBONE_LAYER = "backbone"
HEAD_DROPOUT = "head_dropout"
OUTPUT = "prediction"
IMAGENET_MEAN_BGR = (103.939, 116.779, 123.68)


@keras.saving.register_keras_serializable(package="pipeline")
class CaffePreprocessing(keras.layers.Layer):
    """RGB pixels in [0, 255] -> BGR with the ImageNet mean subtracted: keras.applications'
    "caffe" preprocess_input (VGG16), as a layer that saves with the model."""

    def call(self, images: keras.KerasTensor) -> keras.KerasTensor:
        mean = ops.convert_to_tensor(IMAGENET_MEAN_BGR, dtype=images.dtype)
        return ops.flip(images, axis=-1) - mean


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
    if spec.caffe:
        x = CaffePreprocessing(name="preprocess")(x)
    elif spec.scale != 1.0 or spec.offset != 0.0:
        x = keras.layers.Rescaling(spec.scale, spec.offset, name="preprocess")(x)
    backbone = build_feature_extractor(spec, size, config.model.weights)
    backbone.name = BACKBONE_LAYER
    x = backbone(x, training=False) if spec.pretrained else backbone(x)
    x = keras.layers.Dropout(config.model.dropout, name=HEAD_DROPOUT)(x)
    units, activation = (1, "sigmoid") if num_classes == 2 else (num_classes, "softmax")
    outputs = keras.layers.Dense(units, activation=activation, dtype="float32", name=OUTPUT)(x)
    model = keras.Model(inputs, outputs, name=f"{spec.name.replace('-', '_')}_classifier")
    return Classifier(model, backbone, spec)
