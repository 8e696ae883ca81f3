"""The one-resampling RandomAffine layer: exact geometry, inference identity, seeding."""

from __future__ import annotations

import math

import numpy as np
from keras import ops

from pipeline.data.augment import RandomAffine, affine_matrices

IMAGE = np.arange(5 * 5 * 3, dtype="float32").reshape(1, 5, 5, 3)


def transform(
    angle: float,
    scale: float,
    shift_x: float,
    shift_y: float,
    fill_mode: str = "reflect",
    mirror: float = 1.0,
) -> np.ndarray:
    angle_, scale_, x, y, mirror_ = (
        ops.convert_to_tensor([v]) for v in (angle, scale, shift_x, shift_y, mirror)
    )
    matrices = affine_matrices(angle_, scale_, x, y, 5, 5, mirror_)
    moved = ops.image.affine_transform(IMAGE, matrices, interpolation="bilinear", fill_mode=fill_mode)
    return ops.convert_to_numpy(moved)[0]


def test_a_quarter_turn_and_a_one_pixel_shift_are_exact() -> None:
    np.testing.assert_allclose(transform(math.pi / 2, 1.0, 0.0, 0.0), np.rot90(IMAGE[0], -1), atol=1e-4)
    np.testing.assert_allclose(transform(0.0, 1.0, 1.0, 0.0, "constant")[:, 1:], IMAGE[0][:, :-1])
    np.testing.assert_allclose(transform(0.0, 1.0, 0.0, 1.0, "constant")[1:], IMAGE[0][:-1])
    np.testing.assert_allclose(transform(0.0, 1.0, 0.0, 0.0), IMAGE[0])
    np.testing.assert_allclose(transform(0.0, 1.0, 0.0, 0.0, mirror=-1.0), IMAGE[0][:, ::-1])
    turned_then_mirrored = transform(math.pi / 2, 1.0, 0.0, 0.0, mirror=-1.0)
    np.testing.assert_allclose(turned_then_mirrored, np.rot90(IMAGE[0], -1)[:, ::-1], atol=1e-4)


def test_random_affine_is_seeded_and_the_identity_at_inference() -> None:
    images = np.random.default_rng(0).uniform(0, 255, (4, 16, 16, 3)).astype("float32")
    first = ops.convert_to_numpy(RandomAffine(0.1, 0.1, 0.1, seed=3)(images, training=True))
    again = ops.convert_to_numpy(RandomAffine(0.1, 0.1, 0.1, seed=3)(images, training=True))
    other = ops.convert_to_numpy(RandomAffine(0.1, 0.1, 0.1, seed=4)(images, training=True))
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other) and not np.allclose(first, images)
    np.testing.assert_array_equal(
        ops.convert_to_numpy(RandomAffine(0.1, 0.1, 0.1)(images, training=False)), images
    )
