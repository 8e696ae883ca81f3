"""From the image index to batches: a tf.data input pipeline.

read -> decode (any JPEG/PNG/GIF/BMP, grayscale and CMYK as RGB) -> resize keeping the aspect
ratio (box filter when shrinking 2x or more) -> cache (uint8) -> shuffle -> batch -> augment -> MixUp/CutMix -> prefetch. Images leave
as float32 in [0, 255]; labels as float32 (B, 1) for two classes, one-hot (B, C) otherwise.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from pipeline import layout
from pipeline.config import Config
from pipeline.data.augment import augment_layers, build_eval_crop, build_mixers
from pipeline.data.sizes import load_size

AUTOTUNE = tf.data.AUTOTUNE


JPEG_SCALES = (1, 2, 4, 8)  # libjpeg decodes at 1/2, 1/4, 1/8 scale from the DCT, skipping most work


def jpeg_scale(width: int, height: int, side: int, mode: str) -> int:
    """Index into JPEG_SCALES of the coarsest decode that still leaves `side` pixels where resizing
    needs them: the short side for crop and stretch, the long side for pad."""
    needed = max(width, height) if mode == "pad" else min(width, height)
    fits = [i for i, scale in enumerate(JPEG_SCALES) if needed // scale >= side]
    return fits[-1] if fits else 0


def decode_image(path: tf.Tensor, scale: tf.Tensor | int = 0) -> tf.Tensor:
    """Read and decode one image file as uint8 RGB, whatever its format or colour model; a JPEG at
    1 / JPEG_SCALES[scale] of its size (DCT scaling), other formats whole."""
    data = tf.io.read_file(path)

    def whole() -> tf.Tensor:
        return tf.io.decode_image(data, channels=3, expand_animations=False)

    def jpeg(factor: int):
        return lambda: tf.io.decode_jpeg(data, channels=3, ratio=factor)

    if isinstance(scale, int) and scale == 0:
        image = whole()
    else:
        scaled = lambda: tf.switch_case(scale, [jpeg(f) for f in JPEG_SCALES])  # noqa: E731
        image = tf.cond(tf.io.is_jpeg(data), scaled, whole)
    image.set_shape([None, None, 3])
    return image


def _scale(image: tf.Tensor, height: tf.Tensor, width: tf.Tensor) -> tf.Tensor:
    """Resize with a box filter when shrinking 2x or more (antialiased), bilinear otherwise: under 2x
    bilinear drops no source pixel, and costs 20% less than the box filter on 500 x 375 photos."""
    halving = tf.logical_or(tf.shape(image)[0] >= 2 * height, tf.shape(image)[1] >= 2 * width)
    size = tf.stack([height, width])
    return tf.cond(
        halving,
        lambda: tf.image.resize(image, size, method="area"),
        lambda: tf.image.resize(image, size, method="bilinear"),
    )


def resize_image(image: tf.Tensor, size: int, mode: str) -> tf.Tensor:
    """One uint8 image to size x size float32: `crop` takes the centre square first, `pad` letterboxes
    with black, `stretch` distorts. About twice as fast as an antialiased keras.layers.Resizing."""
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    if mode == "crop":
        side = tf.minimum(height, width)
        top, left = (height - side) // 2, (width - side) // 2
        centre = image[top : top + side, left : left + side]  # a slice: no checks, no copy of rows
        return _scale(centre, size, size)
    if mode == "stretch":
        return _scale(image, size, size)
    scale = size / tf.cast(tf.maximum(height, width), tf.float32)
    new_height = tf.maximum(1, tf.cast(tf.round(tf.cast(height, tf.float32) * scale), tf.int32))
    new_width = tf.maximum(1, tf.cast(tf.round(tf.cast(width, tf.float32) * scale), tf.int32))
    scaled = _scale(image, new_height, new_width)
    return tf.image.pad_to_bounding_box(scaled, (size - new_height) // 2, (size - new_width) // 2, size, size)


def encode_labels(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Float targets: a column of 0/1 for two classes, one-hot rows for more."""
    labels = np.asarray(labels, dtype=np.int64)
    if num_classes == 2:
        return labels.astype(np.float32).reshape(-1, 1)
    return np.eye(num_classes, dtype=np.float32)[labels]


def _cache_file(cache_dir: Path, paths: list[str], size: int, mode: str) -> str:
    digest = hashlib.sha1("\n".join(paths).encode()).hexdigest()[:12]
    cache_dir.mkdir(parents=True, exist_ok=True)
    target = cache_dir / f"images-{size}px-{mode}-{digest}"
    for stale_lock in cache_dir.glob(f"{target.name}*.lockfile"):  # left by an interrupted run
        stale_lock.unlink()
    return str(target)


def make_dataset(
    frame: pd.DataFrame,
    config: Config,
    training: bool,
    num_classes: int = 2,
    cache_dir: Path | None = None,
) -> tf.data.Dataset:
    """Batches of (images, labels) from an index table, or images alone if it has no `label`.

    With `training`, images are shuffled and augmented (augmentation in the model is left to
    the model when `augment.where = "model"`); otherwise order is kept and only a centre crop
    (if cropping is on) is applied.
    """
    data, aug = config.data, config.augment
    seed = data.seed
    has_labels = "label" in frame.columns
    if training:  # randomise the cached order once: an index sorted by class must not give one-class batches
        frame = frame.sample(frac=1.0, random_state=seed)
    paths = frame["path"].astype(str).tolist()
    side = load_size(data.image_size, aug.crop)

    def load(path: tf.Tensor, scale: tf.Tensor | int = 0) -> tf.Tensor:
        image = resize_image(decode_image(path, scale), side, data.resize_mode)
        if data.cache == "none":  # nothing kept: no round trip through uint8
            return image
        return tf.cast(image + 0.5, tf.uint8)  # a quarter of the memory; rounded (filters stay in [0, 255])

    if {"width", "height"} <= set(frame.columns):  # sizes from the index: decode big JPEGs scaled down
        sizes = zip(frame["width"], frame["height"], strict=True)
        scales = [jpeg_scale(int(w), int(h), side, data.resize_mode) for w, h in sizes]
    else:
        scales = [0] * len(paths)
    sources = (paths, scales) if any(scales) else (paths,)  # no scaled decode: no per-image branch
    if has_labels:
        labels = encode_labels(frame["label"].to_numpy(), num_classes)
        dataset = tf.data.Dataset.from_tensor_slices((sources, labels))
    else:
        dataset = tf.data.Dataset.from_tensor_slices(sources)
    if training and data.cache == "none":  # nothing cached: shuffling file names is free
        dataset = dataset.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    order = data.deterministic or not training
    if has_labels:
        dataset = dataset.map(lambda x, y: (load(*x), y), num_parallel_calls=AUTOTUNE, deterministic=order)
    else:
        dataset = dataset.map(load, num_parallel_calls=AUTOTUNE, deterministic=order)
    if data.cache in ("memory", "auto"):  # auto: flow's plan_cache decides first; memory when not planned
        dataset = dataset.cache()
    elif data.cache == "disk":
        folder = cache_dir or layout.image_cache_dir(config)
        dataset = dataset.cache(_cache_file(folder, paths, side, data.resize_mode))
    return _finish(dataset, config, training, has_labels, len(paths))


def apply_layers(layers: list[keras.layers.Layer], images: tf.Tensor, training: bool) -> tf.Tensor:
    """A batch as float32 through `layers` one by one: inside tf.data each runs on TensorFlow by
    itself, whatever the Keras backend."""
    images = tf.cast(images, tf.float32)
    for layer in layers:
        images = layer(images, training=True) if training else layer(images)
    return images


def _finish(
    dataset: tf.data.Dataset, config: Config, training: bool, has_labels: bool, n: int
) -> tf.data.Dataset:
    data, aug = config.data, config.augment
    seed = data.seed
    if training and data.cache != "none":
        dataset = dataset.shuffle(min(data.shuffle_buffer, n), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(data.batch_size)  # serial: copying a batch is cheap, extra threads are not

    layers = augment_layers(aug, data.image_size, seed) if training and aug.where == "pipeline" else []
    crop = None if training else build_eval_crop(aug, data.image_size)
    if crop is not None:
        layers = [crop]

    def transform(images: tf.Tensor) -> tf.Tensor:
        return apply_layers(layers, images, training)

    # Random layers draw from a shared seed state: parallel calls would take its values in a
    # racy order, so a deterministic run augments one batch at a time.
    parallel = None if training and data.deterministic else AUTOTUNE
    images_spec = dataset.element_spec[0] if has_labels else dataset.element_spec
    if layers or images_spec.dtype != tf.float32:  # else nothing to do: no map stage at all
        casting = parallel if layers else None  # a bare cast in parallel competes with decoding
        if has_labels:
            dataset = dataset.map(lambda x, y: (transform(x), y), num_parallel_calls=casting)
        else:
            dataset = dataset.map(transform, num_parallel_calls=casting)
    if training and has_labels:
        for mixer in build_mixers(aug, seed):
            dataset = dataset.map(lambda x, y, layer=mixer: _mix(layer, x, y), num_parallel_calls=parallel)
    options = tf.data.Options()
    options.deterministic = data.deterministic or not training
    return dataset.with_options(options).prefetch(AUTOTUNE)


def _mix(layer: keras.layers.Layer, images: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    mixed = layer({"images": images, "labels": labels}, training=True)
    return mixed["images"], mixed["labels"]
