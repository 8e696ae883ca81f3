"""The tf.data input pipeline: shapes, dtypes, value ranges, labels, caching, augmentation."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from pipeline.acquire.index import ImageIndex
from pipeline.config import Config
from pipeline.data.input_pipeline import make_dataset
from tests.conftest import tiny_config


@pytest.fixture(scope="module")
def index(demo_index: ImageIndex) -> ImageIndex:
    return demo_index


def with_values(config: Config, **values: object) -> Config:
    sections = {}
    for key, value in values.items():
        section, name = key.split("__")
        sections[section] = dataclasses.replace(
            sections.get(section, getattr(config, section)), **{name: value}
        )
    return dataclasses.replace(config, **sections)


def batches(index: ImageIndex, config: Config, training: bool = True, count: int = 3) -> list[tuple]:
    return [
        (x.numpy(), y.numpy()) for x, y in make_dataset(index.train, config, training=training).take(count)
    ]


@pytest.mark.parametrize("mode", ["crop", "pad", "stretch"])
def test_batches_have_the_promised_shapes_types_and_ranges(
    index: ImageIndex, tmp_path: Path, mode: str
) -> None:
    config = tiny_config(tmp_path, data__resize_mode=mode)
    images, labels = batches(index, config, count=1)[0]
    assert images.shape == (8, 32, 32, 3) and images.dtype == np.float32
    assert images.min() >= 0.0 and images.max() <= 255.0 and images.max() > 1.0  # pixel units, not [0, 1]
    assert labels.shape == (8, 1) and labels.dtype == np.float32
    assert set(np.unique(labels)) <= {0.0, 1.0}


def test_evaluation_keeps_order_and_every_image(index: ImageIndex, tmp_path: Path) -> None:
    config = tiny_config(tmp_path)
    dataset = make_dataset(index.train, config, training=False)
    labels = np.concatenate([y for _, y in dataset.as_numpy_iterator()]).ravel()
    assert labels.tolist() == index.train["label"].tolist()
    test_images = np.concatenate(list(make_dataset(index.test, config, training=False).as_numpy_iterator()))
    assert test_images.shape == (len(index.test), 32, 32, 3)


def test_training_batches_mix_classes_even_when_the_index_is_sorted(
    index: ImageIndex, tmp_path: Path
) -> None:
    config = tiny_config(tmp_path, data__shuffle_buffer=4)
    sorted_index = dataclasses.replace(index, train=index.train.sort_values("label"))
    epoch = make_dataset(sorted_index.train, config, training=True)
    labels = np.concatenate([y for _, y in epoch.as_numpy_iterator()]).ravel()
    first_half = labels[: len(labels) // 2]
    assert 10 <= first_half.sum() <= len(first_half) - 10  # sorted input would give all cats first


def test_augmentation_is_reproducible_with_a_seed_and_varies_without(
    index: ImageIndex, tmp_path: Path
) -> None:
    config = tiny_config(tmp_path, data__deterministic=True)
    first, again = batches(index, config), batches(index, config)
    for (x1, y1), (x2, y2) in zip(first, again, strict=True):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
    other_seed = batches(index, with_values(config, data__seed=7))
    assert not np.array_equal(first[0][0], other_seed[0][0])
    free = with_values(config, data__deterministic=False)
    assert not all(
        np.array_equal(a[0], b[0]) for a, b in zip(batches(index, free), batches(index, free), strict=True)
    )


def test_augmentation_changes_pixels_and_can_move_into_the_model(index: ImageIndex, tmp_path: Path) -> None:
    plain = with_values(
        tiny_config(tmp_path, data__deterministic=True),
        augment__flip=False,
        augment__rotation=0.0,
        augment__zoom=0.0,
        augment__translation=0.0,
        augment__contrast=0.0,
        augment__brightness=0.0,
    )
    augmented = tiny_config(tmp_path, data__deterministic=True)
    in_model = with_values(augmented, augment__where="model")
    x_plain, x_aug, x_model = (batches(index, c, count=1)[0][0] for c in (plain, augmented, in_model))
    assert not np.array_equal(x_plain, x_aug)
    np.testing.assert_array_equal(x_plain, x_model)  # the model will augment, the pipeline does not


def test_randaugment_crop_and_mixup(index: ImageIndex, tmp_path: Path) -> None:
    config = tiny_config(
        tmp_path, augment__randaugment_magnitude=0.5, augment__crop=0.2, augment__mixup_alpha=0.4
    )
    drawn = batches(index, config, count=4)
    assert all(images.shape == (8, 32, 32, 3) for images, _ in drawn)
    # MixUp blends labels (a batch whose partners all share a class keeps 0/1: look at several)
    assert any(((labels > 0) & (labels < 1)).any() for _, labels in drawn)
    eval_images = next(iter(make_dataset(index.train, config, training=False)))[0]
    assert eval_images.shape == (8, 32, 32, 3)  # centre crop at evaluation


def test_cutmix_mixes_labels_of_two_classes(index: ImageIndex, tmp_path: Path) -> None:
    config = tiny_config(tmp_path, augment__cutmix_alpha=1.0, data__batch_size=16)
    _, labels = batches(index, config, count=1)[0]
    assert labels.shape == (16, 1) and ((labels > 0) & (labels < 1)).any()


def test_disk_cache_is_written_and_gives_the_same_images(index: ImageIndex, tmp_path: Path) -> None:
    config = tiny_config(tmp_path, data__cache="disk")
    cache_dir = tmp_path / "cache"
    first = np.concatenate(
        [x for x, _ in make_dataset(index.train, config, False, cache_dir=cache_dir).as_numpy_iterator()]
    )
    assert any(cache_dir.iterdir())
    second = np.concatenate(
        [x for x, _ in make_dataset(index.train, config, False, cache_dir=cache_dir).as_numpy_iterator()]
    )
    np.testing.assert_array_equal(first, second)


@pytest.mark.parametrize("shape", [(300, 100), (100, 300), (20, 12), (64, 64)])
def test_resize_keeps_the_promise_of_each_mode(shape: tuple[int, int]) -> None:
    from pipeline.data.input_pipeline import resize_image

    height, width = shape
    image = np.full((height, width, 3), 200, np.uint8)
    for mode in ("crop", "pad", "stretch"):
        out = resize_image(tf.constant(image), 32, mode).numpy()
        assert out.shape == (32, 32, 3) and out.dtype == np.float32, mode
        if mode == "pad" and height != width:  # letterbox: black bars on the short side only
            assert out.min() == 0 and out.max() == pytest.approx(200, abs=1)
            bars = out[:, 0] if height > width else out[0]
            assert np.all(bars == 0)
        else:  # the whole square is picture
            np.testing.assert_allclose(out, 200, atol=1)


def test_crop_takes_the_centre_and_shrinking_is_antialiased() -> None:
    from pipeline.data.input_pipeline import resize_image

    stripes = np.zeros((64, 192, 3), np.uint8)
    stripes[:, 64:128] = 255  # the centre square is white, the sides black
    np.testing.assert_allclose(resize_image(tf.constant(stripes), 16, "crop").numpy(), 255, atol=1)
    checker = (np.indices((64, 64)).sum(axis=0) % 2 * 255).astype(np.uint8)[..., None].repeat(3, axis=2)
    shrunk = resize_image(tf.constant(checker), 16, "crop").numpy()
    np.testing.assert_allclose(shrunk, 127.5, atol=1)  # a box filter averages the pattern away


def test_big_jpegs_are_decoded_scaled_down_to_nearly_the_same_pixels(tmp_path: Path) -> None:
    from PIL import Image

    from pipeline.data.input_pipeline import JPEG_SCALES, decode_image, jpeg_scale, resize_image

    assert jpeg_scale(1000, 600, 128, "crop") == JPEG_SCALES.index(4)  # 600 / 4 = 150 >= 128
    assert jpeg_scale(1000, 600, 128, "pad") == JPEG_SCALES.index(4)  # 1000 / 8 = 125 < 128
    assert jpeg_scale(200, 200, 224, "crop") == 0
    rng = np.random.default_rng(0)
    smooth = np.kron(rng.uniform(0, 255, (24, 32, 3)), np.ones((40, 40, 1))).astype(np.uint8)  # 960 x 1280
    for mode in ("RGB", "CMYK"):
        path = tmp_path / f"big-{mode}.jpg"
        Image.fromarray(smooth).convert(mode).save(path, quality=95)
        scale = jpeg_scale(1280, 960, 112, "crop")
        assert JPEG_SCALES[scale] == 8
        fast = decode_image(tf.constant(str(path)), tf.constant(scale))
        assert fast.shape == (120, 160, 3)
        full = resize_image(decode_image(tf.constant(str(path))), 112, "crop").numpy()
        scaled = resize_image(fast, 112, "crop").numpy()
        assert np.abs(full - scaled).mean() < 4, mode  # the same picture, a fraction of the decoding


def test_the_cache_setting_changes_no_image_beyond_rounding(index: ImageIndex, tmp_path: Path) -> None:
    def images(cache: str) -> np.ndarray:
        config = tiny_config(tmp_path, data__cache=cache)
        return np.concatenate([x for x, _ in make_dataset(index.train, config, False).as_numpy_iterator()])

    kept, decoded = images("memory"), images("none")
    assert kept.dtype == decoded.dtype == np.float32
    np.testing.assert_array_equal(kept, np.round(kept))  # cached as uint8
    np.testing.assert_allclose(kept, decoded, atol=0.5 + 1e-4)  # not cached: the same before rounding
    assert np.abs(kept - decoded).max() > 0  # ... and genuinely not rounded
