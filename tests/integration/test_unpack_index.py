import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.acquire.index import build_index, check_image, prepare_index
from pipeline.acquire.unpack import unpack_competition
from pipeline.competitions import get_competition
from pipeline.data.input_pipeline import decode_image
from pipeline.demo.generate import generate_competition
from tests.conftest import shared_dataset, tiny_config


@pytest.mark.parametrize(
    ("slug", "test_dir", "sample"),
    [
        ("dogs-vs-cats", "test1", "sampleSubmission.csv"),
        ("dogs-vs-cats-redux-kernels-edition", "test", "sample_submission.csv"),
    ],
)
def test_both_kaggle_layouts_unpack_and_index(tmp_path: Path, slug: str, test_dir: str, sample: str) -> None:
    competition = get_competition(slug)
    served = tmp_path / "served"
    generate_competition(competition, served, train_per_class=6, test_size=5, seed=3)
    with zipfile.ZipFile(served / f"{slug}.zip") as outer:  # the exact layout of Kaggle's download
        assert sorted(outer.namelist()) == sorted(["train.zip", f"{test_dir}.zip", sample])
    files = unpack_competition(competition, served, tmp_path / "data")
    assert files.test_dir == tmp_path / "data" / test_dir
    assert files.sample_submission.name == sample
    index = build_index(competition, files, tmp_path / "data" / "converted", workers=2)
    assert index.class_counts(competition.classes) == {"cat": 6, "dog": 6}
    assert sorted(index.test["id"].astype(int)) == [1, 2, 3, 4, 5]
    assert index.train["id"].is_unique and "cat.0" in set(index.train["id"])  # cat.N and dog.N both exist
    assert set(index.train.loc[index.train["path"].str.contains("/dog."), "label"]) == {1}
    assert sorted(index.rejects["reason"]) == sorted(
        ["empty file", "not an image (unknown format)", index.rejects["reason"].iloc[-1]]
    )
    assert any(r.startswith("cannot decode: image file is truncated") for r in index.rejects["reason"])


def test_unpack_is_idempotent_and_redoes_interrupted_work(
    tmp_path: Path, demo_archive_dir: Path, demo
) -> None:
    data = tmp_path / "data"
    files = unpack_competition(demo, demo_archive_dir, data)
    marker_time = (files.train_dir / ".unpacked").stat().st_mtime_ns
    (files.test_dir / ".unpacked").unlink()  # as if killed while unpacking the test images
    (files.test_dir / "1.jpg").unlink()
    again = unpack_competition(demo, demo_archive_dir, data)
    assert (again.train_dir / ".unpacked").stat().st_mtime_ns == marker_time  # finished work kept
    assert (again.test_dir / "1.jpg").is_file()  # interrupted work redone


def test_attached_read_only_folders_are_used_in_place(tmp_path: Path, demo_archive_dir: Path, demo) -> None:
    attached = tmp_path / "kaggle-input"  # as /kaggle/input/<slug> in a notebook: already unpacked
    unpack_competition(demo, demo_archive_dir, attached)
    files = unpack_competition(demo, attached, tmp_path / "working")
    assert files.train_dir == attached / "train"
    assert not (tmp_path / "working" / "train").exists()


def _save(image: Image.Image, path: Path, **kwargs: object) -> Path:
    image.save(path, **kwargs)
    return path


def test_unusual_formats_load_as_rgb(tmp_path: Path) -> None:
    rgb = np.zeros((20, 30, 3), np.uint8)
    rgb[:, :15] = (200, 30, 30)
    rgb[:, 15:] = (20, 40, 220)
    picture = Image.fromarray(rgb)
    files = {
        "gray": _save(picture.convert("L"), tmp_path / "gray.jpg"),
        "cmyk": _save(picture.convert("CMYK"), tmp_path / "cmyk.jpg", quality=95),
        "png_named_jpg": _save(picture, tmp_path / "png.jpg", format="PNG"),
        "rgba_png": _save(picture.convert("RGBA"), tmp_path / "rgba.png"),
    }
    for kind, path in files.items():
        assert check_image(path).ok, kind
        decoded = decode_image(str(path)).numpy()
        assert decoded.shape == (20, 30, 3), kind
        if kind in ("cmyk", "png_named_jpg", "rgba_png"):
            assert np.abs(decoded.astype(int) - rgb).mean() < 3, kind  # colours survive, not just shape


def test_formats_tensorflow_cannot_read_are_converted(tmp_path: Path, demo) -> None:
    train, test = tmp_path / "train", tmp_path / "test"
    train.mkdir()
    test.mkdir()
    Image.new("RGB", (24, 24), (10, 200, 10)).save(train / "dog.1.jpg", format="WEBP", lossless=True)
    Image.new("RGB", (24, 24), (10, 10, 200)).save(train / "cat.2.jpg", format="JPEG")
    Image.new("RGB", (24, 24)).save(test / "1.jpg", format="JPEG")
    from pipeline.acquire.unpack import CompetitionFiles

    index = build_index(
        demo, CompetitionFiles(train, test, tmp_path / "s.csv"), tmp_path / "converted", workers=1
    )
    webp = index.train.loc[index.train["id"] == "dog.1", "path"].item()
    assert webp.endswith(".png") and Path(webp).is_file()
    assert decode_image(webp).numpy()[0, 0].tolist() == [10, 200, 10]


def test_index_counts_on_real_photos(tmp_path: Path) -> None:
    mini = shared_dataset("dogs-vs-cats-mini")
    config = tiny_config(tmp_path, competition="dogs-vs-cats", paths__input_root=str(tmp_path / "input"))
    (tmp_path / "input").mkdir()
    (tmp_path / "input" / "dogs-vs-cats").symlink_to(mini)  # read-only, as on Kaggle
    index = prepare_index(config, get_competition("dogs-vs-cats"))
    assert index.class_counts(("cat", "dog")) == {"cat": 750, "dog": 750}
    assert len(index.test) == 502
    assert index.train["width"].between(59, 1023).all()
    saved = prepare_index(config, get_competition("dogs-vs-cats"))  # reused from the saved CSVs
    assert saved.train.equals(index.train.astype(saved.train.dtypes))


def test_a_cut_index_is_rebuilt_and_a_split_of_other_images_is_refused_not_overwritten(
    tmp_path: Path, demo_archive_dir: Path, demo
) -> None:
    from pipeline import layout
    from pipeline.fit.splits import kfold_assignment

    config = tiny_config(tmp_path, paths__input_root=str(demo_archive_dir.parent))
    whole = prepare_index(config, demo)
    kfold_assignment(config, whole)
    split = layout.folds_file(config, config.train.folds)
    saved_split = split.read_bytes()
    train_csv = layout.index_dir(config) / "train.csv"
    train_csv.write_bytes(train_csv.read_bytes()[:4096])  # a full disk cut it; test.csv, rejects.csv stay
    again = prepare_index(config, demo)  # rebuilt, not trusted
    assert len(again.train) == len(whole.train) and set(again.train["id"]) == set(whole.train["id"])
    fewer = again.train.iloc[: len(again.train) // 3]
    with pytest.raises(layout.SplitMismatchError, match=str(split)):
        kfold_assignment(config, again.__class__(fewer, again.test, again.rejects))
    assert split.read_bytes() == saved_split  # the split the runs depend on is kept
