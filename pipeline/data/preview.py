"""A look at a few augmented training batches: shapes, value ranges, speed, and a picture grid."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from pipeline.competitions import Competition
from pipeline.config import Config
from pipeline.data.input_pipeline import make_dataset


@dataclass(frozen=True)
class BatchReport:
    """What the first batches of the training pipeline looked like."""

    batches: int
    images: int
    image_shape: tuple[int, ...]
    label_shape: tuple[int, ...]
    pixel_min: float
    pixel_max: float
    seconds: float

    def __str__(self) -> str:
        rate = self.images / self.seconds if self.seconds > 0 else float("inf")
        return (
            f"{self.batches} batches, images {self.image_shape} float32 in [{self.pixel_min:.0f}, "
            f"{self.pixel_max:.0f}], labels {self.label_shape}; {rate:,.0f} images/s (first pass, decoding)"
        )


def save_grid(
    images: np.ndarray, labels: np.ndarray, classes: tuple[str, ...], path: Path, columns: int = 8
) -> None:
    """Save images (N, H, W, 3) in [0, 255] as one PNG grid, each captioned with its (mixed) label."""
    count, height, width = images.shape[:3]
    rows = -(-count // columns)
    grid = Image.new("RGB", (columns * width, rows * (height + 14)), "white")
    draw = ImageDraw.Draw(grid)
    for i in range(count):
        x, y = (i % columns) * width, (i // columns) * (height + 14)
        grid.paste(Image.fromarray(np.clip(images[i], 0, 255).astype(np.uint8)), (x, y))
        target = labels[i].ravel()
        if target.size == 1:  # P(positive class); shown as a name unless MixUp/CutMix blended it
            caption = classes[int(target[0])] if target[0] in (0.0, 1.0) else f"{classes[-1]} {target[0]:.2f}"
        else:
            caption = classes[int(np.argmax(target))]
        draw.text((x + 2, y + height), caption, fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(path)


def preview_batches(
    train: pd.DataFrame, config: Config, competition: Competition, out_png: Path, batches: int = 3
) -> BatchReport:
    """Draw `batches` augmented training batches, describe them (a one-line summary) and save the first as a grid."""
    dataset = make_dataset(train, config, training=True, num_classes=len(competition.classes))
    start = time.perf_counter()
    seen = [(x.numpy(), y.numpy()) for x, y in dataset.take(batches)]
    seconds = time.perf_counter() - start
    images = np.concatenate([x for x, _ in seen])
    save_grid(seen[0][0][:32], seen[0][1][:32], competition.classes, out_png)
    return BatchReport(
        batches=len(seen),
        images=len(images),
        image_shape=tuple(seen[0][0].shape),
        label_shape=tuple(seen[0][1].shape),
        pixel_min=float(images.min()),
        pixel_max=float(images.max()),
        seconds=seconds,
    )
