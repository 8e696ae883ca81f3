"""Index unpacked images into tables (path, id, label) and set aside files that cannot be used.

`prepare_index` is the stage's entry: unpack the competition if needed, then build the index
once and reuse it from data/<slug>/index/.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

from pipeline import layout
from pipeline.acquire.classes import (
    IGNORED_NAMES,
    LabelsTable,
    read_labels_csv,
    report_label_problems,
    resolve_classes,
)
from pipeline.acquire.unpack import CompetitionFiles, unpack_competition
from pipeline.atomic import write_atomically, write_text
from pipeline.competitions import Competition
from pipeline.config import Config
from pipeline.locks import exclusive
from pipeline.tables import read_text_csv

TF_FORMATS = {"JPEG", "PNG", "GIF", "BMP"}  # what tf.io.decode_image reads; others are converted
# Pillow's own limit (89,478,485 pixels, about 9,459 x 9,459): an image whose header claims more is
# set aside as a decompression bomb instead of being decoded (a photo of a pet is under 1 MP).
MAX_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)  # checked explicitly below


@dataclass(frozen=True)
class ImageCheck:
    """What opening one file found: usable or not, and why."""

    path: str
    ok: bool
    reason: str = ""
    width: int = 0
    height: int = 0
    needs_conversion: bool = False


@dataclass(frozen=True)
class ImageIndex:
    """The competition's usable images and the files set aside."""

    train: pd.DataFrame  # path, id, label, width, height
    test: pd.DataFrame  # path, id, width, height
    rejects: pd.DataFrame  # path, split, reason
    classes: tuple[str, ...] = ()  # the class names, in the order of their index (label)

    def resolve(self, competition: Competition) -> Competition:
        """`competition` with the classes this index was built with (tables may leave them out)."""
        return competition.with_classes(self.classes)

    def class_counts(self, classes: tuple[str, ...]) -> dict[str, int]:
        """Number of training images per class name."""
        counts = self.train["label"].value_counts()
        return {name: int(counts.get(i, 0)) for i, name in enumerate(classes)}


def check_image(path: Path) -> ImageCheck:
    """Decode `path` fully (at reduced scale for JPEG) and report whether it is a usable image."""
    if path.stat().st_size == 0:
        return ImageCheck(str(path), False, "empty file")
    try:
        opened = Image.open(path)  # reads the header only
    except Image.DecompressionBombError as error:  # Pillow refuses over twice its limit by itself
        claimed = re.search(r"\((\d+) pixels\)", str(error))
        return _bomb(path, int(claimed.group(1)) if claimed else None)
    except UnidentifiedImageError:
        return ImageCheck(str(path), False, "not an image (unknown format)")
    except (OSError, SyntaxError, ValueError) as error:
        return ImageCheck(str(path), False, f"cannot decode: {error}")
    if opened.width * opened.height > MAX_PIXELS:
        opened.close()
        return _bomb(path, opened.width * opened.height)
    try:
        with opened as image:
            width, height = image.size
            image_format = image.format or ""
            image.draft("RGB", (64, 64))  # JPEG: decode at 1/8 scale, still reading every byte
            image.load()
    except (OSError, SyntaxError, ValueError) as error:
        return ImageCheck(str(path), False, f"cannot decode: {error}")
    if width < 2 or height < 2:
        return ImageCheck(str(path), False, f"image too small ({width}x{height})")
    return ImageCheck(str(path), True, "", width, height, needs_conversion=image_format not in TF_FORMATS)


def _bomb(path: Path, pixels: int | None) -> ImageCheck:
    claimed = f"{pixels:,} pixels" if pixels else "too many pixels"
    return ImageCheck(str(path), False, f"decompression bomb: {claimed} (limit {MAX_PIXELS:,})")


def convert_to_png(path: Path, out_dir: Path) -> Path:
    """Write an RGB PNG copy of an image TensorFlow cannot decode (e.g. WebP, TIFF); return its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{path.parent.name}-{path.stem}.png"
    if not target.exists():
        with Image.open(path) as image:
            converted = image.convert("RGB")
        write_atomically(target, lambda p: converted.save(p, format="PNG"))
    return target


def _check_all(paths: list[Path], workers: int, desc: str) -> list[ImageCheck]:
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return list(
            tqdm(
                pool.map(check_image, paths),
                total=len(paths),
                desc=desc,
                unit="img",
                leave=False,
                disable=None,
            )
        )


def train_labeller(
    competition: Competition, files: CompetitionFiles, table: LabelsTable | None = None
) -> Callable[[Path], tuple[str, int] | str | None]:
    """(id, class index) of a training file from its path under the train folder, by the
    competition's label source: the file name's pattern, the labels CSV (`table`: read already),
    or the class folder; a reason it has none (or None: no label or id)."""
    if competition.labels == "folders":

        def from_folder(relative: Path) -> tuple[str, int] | None:
            label = relative.parts[0] if len(relative.parts) == 2 else None
            if label not in competition.classes:
                return None
            return f"{label}/{relative.name}", competition.classes.index(label)

        return from_folder
    if competition.labels == "csv":
        assert files.labels is not None  # unpack_competition finds it or refuses
        table = table or read_labels_csv(competition, files.labels)
        labels, labels_name = table.labels, files.labels.name

        def from_csv(relative: Path) -> tuple[str, int] | str | None:
            key = relative.name if competition.labels_id_has_extension else relative.stem
            if key in table.conflicting:
                return f"{labels_name} gives it {len(table.conflicting[key])} labels: {', '.join(table.conflicting[key])}"
            label = labels.get(key) if len(relative.parts) == 1 else None
            if label not in competition.classes:
                return None
            return key, competition.classes.index(label)

        return from_csv
    return lambda relative: competition.parse_train_name(relative.name) if len(relative.parts) == 1 else None


def _index_folder(
    folder: Path,
    split: str,
    parse: Callable[[Path], tuple[str, int | None] | str | None],
    convert_dir: Path,
    workers: int,
    recursive: bool = False,
) -> tuple[pd.DataFrame, list[dict[str, str]]]:
    rejects: list[dict[str, str]] = []
    named: list[tuple[Path, tuple[str, int | None]]] = []
    listed = folder.rglob("*") if recursive else folder.iterdir()
    for path in sorted(p for p in listed if p.is_file() and p.name not in IGNORED_NAMES):
        parsed = parse(path.relative_to(folder))
        if parsed is None or isinstance(parsed, str):
            reason = parsed or "no label or id for this file"
            rejects.append({"path": str(path), "split": split, "reason": reason})
        else:
            named.append((path, parsed))
    seen: set[str] = set()
    unique: list[tuple[Path, tuple[str, int | None]]] = []
    for path, parsed in named:  # e.g. dog.1.jpg beside dog.1.png: the id would be ambiguous
        if parsed[0] in seen:
            rejects.append({"path": str(path), "split": split, "reason": f"duplicate id {parsed[0]}"})
        else:
            seen.add(parsed[0])
            unique.append((path, parsed))
    named = unique
    rows = []
    checks = _check_all([p for p, _ in named], workers, f"check {split} images")
    for (path, parsed), check in zip(named, checks, strict=True):
        if not check.ok:
            rejects.append({"path": str(path), "split": split, "reason": check.reason})
            continue
        usable = convert_to_png(path, convert_dir) if check.needs_conversion else path
        rows.append({"path": str(usable), "parsed": parsed, "width": check.width, "height": check.height})
    return pd.DataFrame(rows, columns=["path", "parsed", "width", "height"]), rejects


def build_index(
    competition: Competition, files: CompetitionFiles, convert_dir: Path, workers: int = 8
) -> ImageIndex:
    """Scan, validate and index the train and test folders; no bad file stops the run.

    Images in formats TensorFlow cannot decode are converted to PNG in `convert_dir`. Classes the
    table leaves out are read from the data first.
    """
    table = None
    if competition.labels == "csv" and files.labels is not None:
        table = read_labels_csv(competition, files.labels)
        report_label_problems(files.labels, table)
    competition = resolve_classes(competition, files, table)
    train, train_rejects = _index_folder(
        files.train_dir,
        "train",
        train_labeller(competition, files, table),
        convert_dir,
        workers,
        recursive=competition.labels == "folders",
    )

    def parse_test(relative: Path) -> tuple[str, None] | None:
        image_id = competition.parse_test_name(relative.name)
        return None if image_id is None else (image_id, None)

    test, test_rejects = _index_folder(files.test_dir, "test", parse_test, convert_dir, workers)
    train_table = pd.DataFrame(
        {
            "path": train["path"],
            "id": [p[0] for p in train["parsed"]],
            "label": pd.Series([p[1] for p in train["parsed"]], dtype="int64"),
            "width": train["width"].astype("int64"),
            "height": train["height"].astype("int64"),
        }
    )
    test_table = pd.DataFrame(
        {
            "path": test["path"],
            "id": [p[0] for p in test["parsed"]],
            "width": test["width"].astype("int64"),
            "height": test["height"].astype("int64"),
        }
    )
    rejects = pd.DataFrame(train_rejects + test_rejects, columns=["path", "split", "reason"])
    if table is not None:
        _report_unmatched_labels(table, files.labels, train_table, rejects)
    return ImageIndex(train_table, test_table, rejects, competition.classes)


def _report_unmatched_labels(
    table: LabelsTable, labels_csv: Path, train: pd.DataFrame, rejects: pd.DataFrame
) -> None:
    """Say how many ids of the labels CSV name no usable image (a missing or rejected file)."""
    labelled = set(table.labels)
    unmatched = sorted(labelled - set(train["id"].astype(str)))
    if unmatched:
        rejected = len(rejects[rejects["split"] == "train"])
        print(
            f"warning: {len(unmatched):,} of {len(labelled):,} ids in {labels_csv} have no usable training "
            f"image (e.g. {unmatched[:5]}; {rejected:,} training file(s) were rejected, see rejects.csv)"
        )


INDEX_FILES = ("train.csv", "test.csv", "rejects.csv")
INDEX_MARKER = "index.json"  # written last: the rows and SHA-256 of each table, so a cut file is seen


def save_index(index: ImageIndex, index_dir: Path) -> None:
    """Write train.csv, test.csv and rejects.csv into `index_dir`, each whole then renamed, then
    index.json, which records their rows and hashes (an index without it is never trusted)."""
    (index_dir / INDEX_MARKER).unlink(missing_ok=True)
    record = {}
    for name, table in zip(INDEX_FILES, (index.train, index.test, index.rejects), strict=True):
        path = write_atomically(index_dir / name, lambda p, t=table: t.to_csv(p, index=False))
        record[name] = {"rows": len(table), "sha256": _sha256(path)}
    record["classes"] = list(index.classes)
    write_text(index_dir / INDEX_MARKER, json.dumps(record, indent=2) + "\n")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_index(index_dir: Path) -> ImageIndex | None:
    """The saved index in `index_dir`, or None if it was never completed or a file of it does not
    match what index.json recorded (cut short by a full disk, edited, half replaced)."""
    marker = index_dir / INDEX_MARKER
    if not marker.is_file():
        return None
    try:
        record = json.loads(marker.read_text())
        damaged = [name for name in INDEX_FILES if _sha256(index_dir / name) != record[name]["sha256"]]
    except (OSError, ValueError, KeyError, TypeError):
        damaged = ["index.json"]
    if damaged:
        print(
            f"The index in {index_dir} is damaged ({', '.join(damaged)} changed since it was written): rebuilding it."
        )
        return None
    dtypes = {"id": str, "path": str}
    tables = [pd.read_csv(index_dir / name, dtype=dtypes, keep_default_na=False) for name in INDEX_FILES]
    return ImageIndex(*tables, classes=tuple(record.get("classes", ())))


def _reusable(saved: ImageIndex | None, competition: Competition) -> ImageIndex | None:
    """The saved index if it was built with the table's classes (an index from before classes were
    recorded takes the table's; a table whose classes changed is indexed again)."""
    if saved is None or (saved.classes and competition.classes and saved.classes != competition.classes):
        return None
    if not saved.classes:
        return dataclasses.replace(saved, classes=competition.classes) if competition.classes else None
    return saved


def prepare_index(config: Config, competition: Competition, rebuild: bool = False) -> ImageIndex:
    """Unpack the competition (if needed) and return its index, building it on first use."""
    target = layout.index_dir(config)
    if not rebuild and (saved := _reusable(load_index(target), competition)) is not None:
        return saved
    with exclusive(layout.competition_dir(config), "unpacking and indexing", wait=True):
        if not rebuild and (saved := _reusable(load_index(target), competition)) is not None:
            return saved  # built while this one waited
        files = unpack_competition(competition, layout.input_dir(config), layout.competition_dir(config))
        index = build_index(competition, files, layout.converted_dir(config), config.data.validation_workers)
        save_index(index, target)
        config.save(target)
    return index


def with_indexed_classes(config: Config, competition: Competition) -> Competition:
    """`competition` with the classes of its saved index, for commands that need no images (submit):
    a table that leaves them out has them only once the data was indexed."""
    if competition.classes:
        return competition
    saved = load_index(layout.index_dir(config))
    return competition if saved is None else saved.resolve(competition)


def sample_submission(config: Config, competition: Competition) -> pd.DataFrame:
    """The competition's sample submission (unpacking it first if needed)."""
    files = unpack_competition(competition, layout.input_dir(config), layout.competition_dir(config))
    return read_text_csv(files.sample_submission)


def describe_index(index: ImageIndex, competition: Competition, where: Path) -> str:
    """A short report: images per class (the 12 largest and the smallest of many), test images,
    rejected files and where they are listed."""
    counts = index.class_counts(index.resolve(competition).classes)
    lines = [f"Index of {competition.slug} in {where}:"]
    shown = sorted(counts.items(), key=lambda item: -item[1])
    if len(shown) > 12:
        lines.append(
            f"  train: {len(shown)} classes, {sum(counts.values()):,} images; the largest and smallest:"
        )
        shown = shown[:6] + shown[-6:]
    else:
        shown = list(counts.items())
    lines += [f"  train {name:>8}: {count:,}" for name, count in shown]
    lines.append(f"  test {'':>9}  {len(index.test):,}")
    if len(index.rejects):
        lines.append(
            f"  rejected: {len(index.rejects)} file(s), listed with the reason in {where / 'rejects.csv'}"
        )
        for row in index.rejects.head(5).itertuples():
            lines.append(f"    {Path(row.path).name}: {row.reason}")
    else:
        lines.append("  rejected: none")
    return "\n".join(lines)
