"""Generate a small competition in Kaggle's exact layout: the demo, and test fixtures.

Cats are cool-coloured triangles and dogs warm-coloured discs on noisy grey backgrounds, in varied sizes, colours and file
formats (RGB, grayscale and CMYK JPEG, PNG named .jpg), plus a few broken files, so every path of
the indexer runs. The true test labels go to a hidden `solution.csv` beside the archive.
"""

from __future__ import annotations

import colorsys
import io
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from pipeline.competitions import Competition


def draw_shape(label: int, rng: np.random.Generator) -> Image.Image:
    """One RGB picture: a warm disc for label 1 (dog), a cool triangle for label 0 (cat)."""
    width = int(rng.integers(64, 321))
    height = int(np.clip(width * rng.uniform(0.6, 1.6), 48, 400))
    base = rng.integers(40, 216) + rng.integers(-25, 26, size=3)  # greyish, never the shape's colour
    noise = rng.normal(0, 20, size=(height, width, 3))
    background = np.clip(base + noise, 0, 255).astype(np.uint8)
    image = Image.fromarray(background)
    draw = ImageDraw.Draw(image)
    side = min(width, height)
    radius = rng.uniform(0.2, 0.4) * side
    # inside the central square, so that a centre crop keeps the shape
    cx = width / 2 + rng.uniform(-1, 1) * (side / 2 - radius)
    cy = height / 2 + rng.uniform(-1, 1) * (side / 2 - radius)
    hue = rng.uniform(0.0, 0.15) if label == 1 else rng.uniform(0.45, 0.65)  # dogs warm, cats cool
    colour = tuple(
        int(255 * c) for c in colorsys.hsv_to_rgb(hue, rng.uniform(0.6, 1.0), rng.uniform(0.6, 1.0))
    )
    if label == 1:
        draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=colour)
    else:
        angle = rng.uniform(0, 2 * np.pi)
        points = [
            (cx + radius * np.cos(angle + k * 2 * np.pi / 3), cy + radius * np.sin(angle + k * 2 * np.pi / 3))
            for k in range(3)
        ]
        draw.polygon(points, fill=colour)
    return image


def encode(image: Image.Image, rng: np.random.Generator, extension: str = ".jpg") -> bytes:
    """The picture as file bytes in a randomly chosen format, as real scraped photos come (TIFF
    for a .tif file)."""
    buffer = io.BytesIO()
    kind = (
        "tiff"
        if extension == ".tif"
        else rng.choice(["rgb", "gray", "cmyk", "png"], p=[0.8, 0.08, 0.06, 0.06])
    )
    if kind in ("png", "tiff"):
        image.save(buffer, format=str(kind).upper())
    else:
        mode = {"rgb": "RGB", "gray": "L", "cmyk": "CMYK"}[str(kind)]
        image.convert(mode).save(buffer, format="JPEG", quality=int(rng.integers(70, 96)))
    return buffer.getvalue()


def _broken_files(rng: np.random.Generator) -> list[bytes]:
    valid = encode(draw_shape(1, rng), rng)
    return [b"", valid[: len(valid) // 3], b"<html>404 Not Found</html>\n"]


def _zip_bytes(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def generate_competition(
    competition: Competition,
    out_dir: Path,
    train_per_class: int = 300,
    test_size: int = 100,
    seed: int = 0,
    broken: bool = True,
    extension: str = ".jpg",
) -> Path:
    """Write `<slug>.zip` (Kaggle's layout for `competition`: nested archives or folders, labels in
    file names, a CSV or class folders) and `solution.csv` into `out_dir`."""
    rng = np.random.default_rng(seed)
    labels = [i % 2 for i in range(train_per_class * 2)] + ([0, 1, 0] if broken else [])
    images = [encode(draw_shape(label, rng), rng, extension) for label in labels[: train_per_class * 2]]
    images += _broken_files(rng) if broken else []
    train: dict[str, bytes] = {}
    rows = []
    for i, (label, data) in enumerate(zip(labels, images, strict=True)):
        name = competition.classes[label]
        if competition.labels == "pattern":  # the broken files follow the last pair: cat.N, dog.N+1, cat.N+2
            number = i // 2 if i < train_per_class * 2 else i - train_per_class
            path = f"{name}.{number}{extension}"
        else:
            stem = f"{i:04d}{rng.integers(16**6):06x}"
            path = f"{name}/{stem}{extension}" if competition.labels == "folders" else f"{stem}{extension}"
            key = f"{stem}{extension}" if competition.labels_id_has_extension else stem
            rows.append({competition.labels_id_column: key, competition.labels_label_column: name})
        train[f"{competition.train_dir}/{path}"] = data
    test_labels = rng.integers(0, 2, size=test_size)
    names = [
        f"{i + 1}{extension}" if competition.labels == "pattern" else f"{rng.integers(16**8):08x}{extension}"
        for i in range(test_size)
    ]
    test = {
        f"{competition.test_dir}/{name}": encode(draw_shape(int(label), rng), rng, extension)
        for name, label in zip(names, test_labels, strict=True)
    }
    ids = [competition.parse_test_name(name) for name in names]
    if competition.labels == "pattern":
        ids = [int(i) for i in ids]  # Dogs vs. Cats numbers its test images
    default = 0.5 if competition.submission_kind == "probability" else 0
    sample = pd.DataFrame({competition.id_column: ids, competition.label_column: default})
    out_dir.mkdir(parents=True, exist_ok=True)
    archive = out_dir / competition.archive
    files = {competition.sample_submission: sample.to_csv(index=False).encode()}
    if competition.labels_csv:
        files[competition.labels_csv] = pd.DataFrame(rows).to_csv(index=False).encode()
    if competition.train_archive:
        files[competition.train_archive] = _zip_bytes(train)
        files[competition.test_archive] = _zip_bytes(test)
    else:
        files.update(train)
        files.update(test)
    archive.write_bytes(_zip_bytes(files))
    solution = pd.DataFrame({competition.id_column: ids, competition.label_column: test_labels})
    solution.to_csv(out_dir / "solution.csv", index=False)
    return archive
