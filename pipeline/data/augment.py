"""Keras augmentation layers built from the configuration."""

from __future__ import annotations

import math
from types import ModuleType

import keras
from keras import KerasTensor, ops

from pipeline.config import AugmentConfig

# A private Keras API, used here only (tests/unit/test_upstream_seams.py fails loudly if it moves):
try:  # Keras' base for layers that run inside tf.data under any backend (not exported as keras.layers)
    from keras.src.layers.preprocessing.data_layer import DataLayer
except ImportError:  # Keras < 3.12
    from keras.src.layers.preprocessing.tf_data_layer import TFDataLayer as DataLayer

VALUE_RANGE = (0, 255)  # images stay in pixel units; each model brings its own preprocessing


def affine_matrices(
    angle: KerasTensor,
    scale: KerasTensor,
    shift_x: KerasTensor,
    shift_y: KerasTensor,
    height: int,
    width: int,
    mirror: KerasTensor | None = None,
    xp: ModuleType = ops,
) -> KerasTensor:
    """Per-image transforms (batch, 8) mapping output pixels to input pixels, as
    keras.ops.image.affine_transform wants: rotate by `angle` (radians, clockwise as displayed)
    and scale by 1/`scale` about the centre, shift by (`shift_x`, `shift_y`) pixels, and mirror
    left-right where `mirror` is -1. `xp` is the array namespace: keras.ops, or a backend's numpy
    (TensorFlow's inside tf.data)."""
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    cos, sin = xp.cos(angle) * scale, xp.sin(angle) * scale
    a0, a1, b0, b1 = cos, sin, -sin, cos
    a2 = cx - a0 * cx - a1 * cy - shift_x
    b2 = cy - b0 * cx - b1 * cy - shift_y
    if mirror is not None:  # sample at x' = cx + mirror * (x - cx): the result is mirrored
        a2, b2 = a2 + a0 * cx * (1 - mirror), b2 + b0 * cx * (1 - mirror)
        a0, b0 = a0 * mirror, b0 * mirror
    zeros = xp.zeros_like(angle)
    return xp.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)


@keras.saving.register_keras_serializable(package="pipeline")
class RandomAffine(DataLayer):
    """Random horizontal flip, rotation, zoom and translation in one resampling of each image.

    The same ranges as RandomRotation (fraction of a turn), RandomZoom and RandomTranslation
    (fractions of the side), but one `affine_transform` instead of four layers: about three times
    less work, which matters when augmentation shares a CPU with training. A Keras DataLayer:
    inside tf.data it computes with TensorFlow whatever the Keras backend (JAX too).
    """

    def __init__(
        self,
        rotation: float,
        zoom: float,
        translation: float,
        flip: bool = True,
        seed: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.rotation, self.zoom, self.translation, self.flip, self.seed = (
            rotation,
            zoom,
            translation,
            flip,
            seed,
        )
        self.generator = keras.random.SeedGenerator(seed)

    def call(self, images: KerasTensor, training: bool = True) -> KerasTensor:
        if not training:
            return images
        backend = self.backend
        seed = self._get_seed_generator(backend._backend)
        batch = backend.shape(images)[0]
        height, width = images.shape[1], images.shape[2]

        def draw(limit: float) -> KerasTensor:
            return backend.random.uniform((batch,), -limit, limit, seed=seed)

        angle = draw(self.rotation * 2 * math.pi)
        scale = 1.0 + draw(self.zoom)
        shift_x, shift_y = draw(self.translation) * width, draw(self.translation) * height
        mirror = None
        if self.flip:
            coin = backend.random.uniform((batch,), 0.0, 1.0, seed=seed)
            mirror = backend.numpy.where(coin < 0.5, -1.0, 1.0)
        transform = affine_matrices(angle, scale, shift_x, shift_y, height, width, mirror, xp=backend.numpy)
        return backend.image.affine_transform(
            images, transform, interpolation="bilinear", fill_mode="reflect"
        )

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return input_shape

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "rotation": self.rotation,
            "zoom": self.zoom,
            "translation": self.translation,
            "flip": self.flip,
            "seed": self.seed,
        }


def augment_layers(config: AugmentConfig, image_size: int, seed: int | None) -> list[keras.layers.Layer]:
    """Per-image random transforms, in pixel units; empty when every factor is 0. Inside tf.data
    they are called one by one: each switches to TensorFlow there by itself, under any backend,
    where a Sequential of them would not."""

    def next_seed(offset: int) -> int | None:
        return None if seed is None else seed + offset

    layers: list[keras.layers.Layer] = []
    if config.crop > 0:
        layers.append(keras.layers.RandomCrop(image_size, image_size, seed=next_seed(1)))
    if config.rotation > 0 or config.zoom > 0 or config.translation > 0:
        layers.append(
            RandomAffine(
                config.rotation, config.zoom, config.translation, flip=config.flip, seed=next_seed(3)
            )
        )
    elif config.flip:
        layers.append(keras.layers.RandomFlip("horizontal", seed=next_seed(2)))
    if config.contrast > 0:
        layers.append(
            keras.layers.RandomContrast(config.contrast, value_range=VALUE_RANGE, seed=next_seed(6))
        )
    if config.brightness > 0:
        layers.append(
            keras.layers.RandomBrightness(config.brightness, value_range=VALUE_RANGE, seed=next_seed(7))
        )
    if config.randaugment_magnitude > 0:
        layers.append(
            keras.layers.RandAugment(
                value_range=VALUE_RANGE,
                num_ops=config.randaugment_ops,
                factor=config.randaugment_magnitude,
                seed=next_seed(8),
            )
        )
    return layers


def build_augmenter(config: AugmentConfig, image_size: int, seed: int | None) -> keras.Sequential | None:
    """The augmentation layers as one Sequential for inside the model; None when every factor is 0."""
    layers = augment_layers(config, image_size, seed)
    return keras.Sequential(layers, name="augment") if layers else None


def build_eval_crop(config: AugmentConfig, image_size: int) -> keras.layers.Layer | None:
    """The centre crop that matches RandomCrop at evaluation time, or None without cropping."""
    return keras.layers.CenterCrop(image_size, image_size) if config.crop > 0 else None


def build_mixers(config: AugmentConfig, seed: int | None) -> list[keras.layers.Layer]:
    """Batch-level label-mixing layers (MixUp, CutMix); they take {"images", "labels"}."""
    mixers: list[keras.layers.Layer] = []
    if config.mixup_alpha > 0:
        mixers.append(keras.layers.MixUp(alpha=config.mixup_alpha, seed=seed))
    if config.cutmix_alpha > 0:
        mixers.append(
            keras.layers.CutMix(factor=config.cutmix_alpha, seed=None if seed is None else seed + 1)
        )
    return mixers


def augments(config: AugmentConfig) -> bool:
    """True when training images are changed at random: some augmentation or mixing layer is built."""
    return bool(augment_layers(config, 32, None) or build_mixers(config, None))
