"""Keras augmentation layers built from the configuration."""

from __future__ import annotations

import math

import keras

from pipeline.config import AugmentConfig

VALUE_RANGE = (0, 255)  # images stay in pixel units; each model brings its own preprocessing


def load_size(image_size: int, crop: float) -> int:
    """Side at which images are decoded so that a crop of `crop` leaves `image_size`."""
    return image_size if crop <= 0 else math.ceil(image_size / (1.0 - crop))


def build_augmenter(config: AugmentConfig, image_size: int, seed: int | None) -> keras.Sequential | None:
    """Per-image random transforms, in pixel units; None when every factor is 0."""

    def next_seed(offset: int) -> int | None:
        return None if seed is None else seed + offset

    layers: list[keras.layers.Layer] = []
    if config.crop > 0:
        layers.append(keras.layers.RandomCrop(image_size, image_size, seed=next_seed(1)))
    if config.flip:
        layers.append(keras.layers.RandomFlip("horizontal", seed=next_seed(2)))
    if config.rotation > 0:
        layers.append(keras.layers.RandomRotation(config.rotation, seed=next_seed(3)))
    if config.zoom > 0:
        layers.append(keras.layers.RandomZoom(config.zoom, seed=next_seed(4)))
    if config.translation > 0:
        layers.append(
            keras.layers.RandomTranslation(config.translation, config.translation, seed=next_seed(5))
        )
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
