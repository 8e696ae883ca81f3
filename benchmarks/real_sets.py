"""The real sets the quality ladders run on, each laid out as its competition's download with the
test labels kept aside (used only to score, never to choose):

    mini    dogs-vs-cats-mini: 1,500 training and 502 test photos (the set the old constants were tuned on)
    200px   dogs-vs-cats-200px: ids 1001-2500 of each class to train (3,000), 2501-3500 to test (2,000)
    digits  scikit-learn's 1,797 handwritten digits, 10 classes, 20% to test (accuracy)
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.photos import SHARED
from pipeline.atomic import write_atomically
from pipeline.competitions import get_competition
from pipeline.demo.generate import zip_bytes

TRAIN_IDS = range(1001, 2501)  # of each class, from dogs-vs-cats-200px
TEST_IDS = range(2501, 3501)


@dataclass(frozen=True)
class RealSet:
    """A set ready to index: its competition, the folder holding <slug>/ for paths.input_root, and
    the hidden test labels by id."""

    name: str
    competition: str
    input_root: Path
    solution: pd.Series  # class index by test id (text)
    image_size: int  # the hand-written script's size, given to the project's default too
    note: str


def mini(work: Path) -> RealSet:
    """dogs-vs-cats-mini as it ships."""
    root = work / "input"
    root.mkdir(parents=True, exist_ok=True)
    if not (root / "dogs-vs-cats").exists():
        (root / "dogs-vs-cats").symlink_to(SHARED / "dogs-vs-cats-mini")
    solution = pd.read_csv(SHARED / "dogs-vs-cats-mini" / "solution.csv", dtype=str, keep_default_na=False)
    labels = solution.set_index("id")["label"].astype(int)
    return RealSet("mini", "dogs-vs-cats", root, labels, 160, "1,500 train / 502 test photos")


def photos_200px(work: Path) -> RealSet:
    """Ids 1001-2500 of each class to train, 2501-3500 to test (numbered 1..2000 as Kaggle's
    test1/ is), in the dogs-vs-cats download layout."""
    root = work / "input"
    folder = root / "dogs-vs-cats"
    archive = folder / "dogs-vs-cats.zip"
    solution_file = folder / "solution.csv"
    if not archive.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        train, test, rows = {}, {}, []
        with zipfile.ZipFile(SHARED / "dogs-vs-cats-200px" / "train.zip") as source:
            for kind in ("cat", "dog"):
                for n in TRAIN_IDS:
                    train[f"train/{kind}.{n}.jpg"] = source.read(f"train/{kind}.{n}.jpg")
            for number, (kind, n) in enumerate(((k, n) for n in TEST_IDS for k in ("cat", "dog")), 1):
                test[f"test1/{number}.jpg"] = source.read(f"train/{kind}.{n}.jpg")
                rows.append({"id": str(number), "label": int(kind == "dog")})
        sample = pd.DataFrame({"id": [r["id"] for r in rows], "label": 0}).to_csv(index=False).encode()
        outer = {"train.zip": zip_bytes(train), "test1.zip": zip_bytes(test), "sampleSubmission.csv": sample}
        pd.DataFrame(rows).to_csv(solution_file, index=False)
        write_atomically(archive, lambda path: path.write_bytes(zip_bytes(outer)))
    solution = (
        pd.read_csv(solution_file, dtype=str, keep_default_na=False).set_index("id")["label"].astype(int)
    )
    return RealSet("200px", "dogs-vs-cats", root, solution, 160, "3,000 train / 2,000 test photos, 200x200")


def digits(work: Path) -> RealSet:
    """scikit-learn's digits as the digits-demo competition (labels CSV, PNG files)."""
    from pipeline.demo.generate import generate_digits

    competition = get_competition("digits-demo")
    root = work / "input"
    folder = root / competition.slug
    if not (folder / "solution.csv").is_file():
        generate_digits(competition, folder)
    solution = pd.read_csv(folder / "solution.csv", dtype=str, keep_default_na=False)
    labels = solution.set_index(competition.id_column)["label"].astype(int)
    return RealSet("digits", competition.slug, root, labels, 64, "1,438 train / 359 test images, 10 classes")


SETS = {"mini": mini, "200px": photos_200px, "digits": digits}


def scores(probabilities: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(log loss, accuracy) of probabilities: P(positive), or (images, classes)."""
    from sklearn.metrics import accuracy_score, log_loss

    p = np.clip(np.asarray(probabilities, dtype=np.float64), 1e-7, 1 - 1e-7)
    if p.ndim == 1:
        return float(log_loss(labels, p, labels=[0, 1])), float(accuracy_score(labels, p >= 0.5))
    p = p / p.sum(axis=1, keepdims=True)
    return float(log_loss(labels, p, labels=list(range(p.shape[1])))), float(
        accuracy_score(labels, p.argmax(1))
    )
