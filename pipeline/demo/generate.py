"""Generate a small competition in Kaggle's exact layout: the demos, and test fixtures.

Shapes: cats are cool-coloured triangles and dogs warm-coloured discs on noisy grey backgrounds
(with more classes, green squares and purple crosses follow), in varied sizes, colours and file
formats (RGB, grayscale and CMYK JPEG, PNG named .jpg), plus a few broken files, so every path of
the indexer runs. Digits: the real 8x8 handwritten digits that ship inside scikit-learn, as PNG
files. The true test labels (class indices) go to a hidden `solution.csv` beside the archive.
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

HUES = ((0.45, 0.65), (0.0, 0.15), (0.25, 0.4), (0.7, 0.9))  # per class: cool, warm, green, purple


def draw_shape(label: int, rng: np.random.Generator) -> Image.Image:
    """One RGB picture: a cool triangle for label 0 (cat), a warm disc for 1 (dog), a green square
    for 2, a purple cross for 3."""
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
    hue = rng.uniform(*HUES[label])
    colour = tuple(
        int(255 * c) for c in colorsys.hsv_to_rgb(hue, rng.uniform(0.6, 1.0), rng.uniform(0.6, 1.0))
    )
    if label == 1:
        draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=colour)
    elif label == 2:
        half = radius * 0.8
        draw.rectangle((cx - half, cy - half, cx + half, cy + half), fill=colour)
    elif label == 3:
        bar = radius * 0.35
        draw.rectangle((cx - radius, cy - bar, cx + radius, cy + bar), fill=colour)
        draw.rectangle((cx - bar, cy - radius, cx + bar, cy + radius), fill=colour)
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


def zip_bytes(files: dict[str, bytes]) -> bytes:
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
    file names, a CSV or class folders; its two to four classes drawn as shapes) and `solution.csv`
    into `out_dir`."""
    rng = np.random.default_rng(seed)
    k = len(competition.classes)
    labels = [i % k for i in range(train_per_class * k)] + ([0, 1, 0] if broken else [])
    images = [encode(draw_shape(label, rng), rng, extension) for label in labels[: train_per_class * k]]
    images += _broken_files(rng) if broken else []
    train: dict[str, bytes] = {}
    rows = []
    for i, (label, data) in enumerate(zip(labels, images, strict=True)):
        name = competition.classes[label]
        if competition.labels == "pattern":  # the broken files follow the last pair: cat.N, dog.N+1, cat.N+2
            number = i // k if i < train_per_class * k else i - train_per_class * (k - 1)
            path = f"{name}.{number}{extension}"
        else:
            stem = f"{i:04d}{rng.integers(16**6):06x}"
            path = f"{name}/{stem}{extension}" if competition.labels == "folders" else f"{stem}{extension}"
            key = f"{stem}{extension}" if competition.labels_id_has_extension else stem
            rows.append({competition.labels_id_column: key, competition.labels_label_column: name})
        train[f"{competition.train_dir}/{path}"] = data
    test_labels = rng.integers(0, k, size=test_size)
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
    return _write(competition, out_dir, train, test, rows, ids, test_labels)


def sample_table(competition: Competition, ids: list) -> pd.DataFrame:
    """The sample submission: every test id with a neutral value in the competition's format."""
    sample = pd.DataFrame({competition.id_column: ids})
    kind, classes = competition.submission_kind, competition.classes
    if kind == "class_probabilities":
        for name in classes:
            sample[name] = round(1 / len(classes), 6)
    else:
        default = {"probability": 0.5, "class_name": classes[0] if classes else "0"}.get(kind, 0)
        sample[competition.label_column] = default
    return sample


def _write(
    competition: Competition,
    out_dir: Path,
    train: dict[str, bytes],
    test: dict[str, bytes],
    rows: list[dict[str, str]],
    ids: list,
    test_labels: np.ndarray,
) -> Path:
    """The archive (nested zips or folders, the labels CSV, the sample) and the hidden solution
    (id and the true class index)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    archive = out_dir / competition.archive
    files = {competition.sample_submission: sample_table(competition, ids).to_csv(index=False).encode()}
    if competition.labels_csv:
        files[competition.labels_csv] = pd.DataFrame(rows).to_csv(index=False).encode()
    if competition.train_archive:
        files[competition.train_archive] = zip_bytes(train)
        files[competition.test_archive] = zip_bytes(test)
    else:
        files.update(train)
        files.update(test)
    archive.write_bytes(zip_bytes(files))
    solution = pd.DataFrame({competition.id_column: ids, "label": test_labels})
    solution.to_csv(out_dir / "solution.csv", index=False)
    return archive


def generate_digits(
    competition: Competition, out_dir: Path, test_fraction: float = 0.2, seed: int = 0
) -> Path:
    """Write the handwritten digits that ship inside scikit-learn (1,797 real 8x8 images, 10
    classes; no download) as a competition of `competition`'s layout (labels in a CSV or class
    folders): a random `test_fraction` becomes the test set, scored against `solution.csv`."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(digits.target))
    test_count = round(len(order) * test_fraction)
    names = [str(c) for c in digits.target_names]
    train: dict[str, bytes] = {}
    test: dict[str, bytes] = {}
    rows, ids, test_labels = [], [], []
    for position, i in enumerate(order):
        buffer = io.BytesIO()
        Image.fromarray((digits.images[i] * 255 / 16).astype(np.uint8), mode="L").save(buffer, format="PNG")
        stem, label = f"{rng.integers(16**8):08x}", int(digits.target[i])
        if position < test_count:
            test[f"{competition.test_dir}/{stem}.png"] = buffer.getvalue()
            ids.append(stem)
            test_labels.append(label)
            continue
        name = names[label]
        path = f"{name}/{stem}.png" if competition.labels == "folders" else f"{stem}.png"
        train[f"{competition.train_dir}/{path}"] = buffer.getvalue()
        key = f"{stem}.png" if competition.labels_id_has_extension else stem
        rows.append({competition.labels_id_column: key, competition.labels_label_column: name})
    return _write(competition, out_dir, train, test, rows, ids, np.asarray(test_labels))


DIGITS_DEMO = "digits-demo"  # the table whose images are scikit-learn's digits, not shapes


def generate(
    competition: Competition, out_dir: Path, train_per_class: int = 300, test_size: int = 100, seed: int = 0
) -> Path:
    """The generated competition `competition` describes: scikit-learn's digits for the digits
    demo (its 1,797 images; the sizes do not apply), shapes otherwise."""
    if competition.slug == DIGITS_DEMO:
        return generate_digits(competition, out_dir, seed=seed)
    return generate_competition(competition, out_dir, train_per_class, test_size, seed)
