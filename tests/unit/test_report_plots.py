"""Report figures drawn from tables: the CV-against-public plot of the ledger."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from pipeline.report.plots import cv_against_public, submission_labels


def test_each_submission_of_one_run_gets_its_own_label_and_the_plot_is_written(tmp_path: Path) -> None:
    rows = pd.DataFrame(
        {
            "time": ["2026-12-03T10:05:00Z", "2026-12-01T09:00:00Z", "2026-12-03T11:30:00Z"],
            "run": ["mobilenet-0.25-160px"] * 3,
            "cv_score": [0.15, 0.18, 0.12],
            "public_score": [0.16, 0.19, 0.13],
        }
    )
    labels = submission_labels(rows)
    assert len(set(labels)) == 3 and labels[0] == "12-03 10:05 mobilenet-0.25-160px"
    picture = cv_against_public(rows, "log_loss", tmp_path / "scores.png")
    assert picture.is_file() and picture.stat().st_size > 1000


def test_errors_concentrated_in_grayscale_images_are_named(tmp_path: Path) -> None:
    import numpy as np
    from PIL import Image

    from pipeline.report.errors import dominant_group, error_table, finding, image_properties

    rng = np.random.default_rng(0)
    rows = []
    for i in range(40):
        gray = i < 10
        pixels = rng.integers(60, 200, (48, 64, 1 if gray else 3)).repeat(3 if gray else 1, axis=-1)
        path = tmp_path / f"{i}.png"
        Image.fromarray(pixels.astype("uint8")).save(path)
        wrong = gray and i < 5  # half the grayscale images are wrong, no colour one
        rows.append({"id": str(i), "width": 64, "height": 48, "wrong": wrong, **image_properties(path)})
    evaluated = pd.DataFrame(rows)
    assert evaluated["grayscale"].tolist() == [True] * 10 + [False] * 30
    table = error_table(evaluated, evaluated)
    colour = table[table["property"] == "colour"].set_index("group")
    assert colour.loc["grayscale", "error rate"] == 0.5 and colour.loc["colour", "error rate"] == 0.0
    assert colour.loc["grayscale", "share of training images"] == 0.25
    sentence = finding(table)
    assert sentence is not None and "grayscale" in sentence and "50%" in sentence and "0%" in sentence
    assert "grayscale" in dominant_group(evaluated[evaluated["wrong"]], evaluated)
    assert finding(error_table(evaluated.assign(wrong=False), evaluated)) is None  # no errors: nothing to say


def test_a_learned_filter_is_matched_to_the_classic_edge_detector_it_resembles(tmp_path: Path) -> None:
    import numpy as np

    from pipeline.report.plots import EDGE_FILTERS, filters_and_edges, grey_filter, nearest_edge_filter

    sobel_x = EDGE_FILTERS["Sobel x"]
    colour = np.stack([sobel_x, sobel_x, sobel_x], axis=-1)  # the same kernel on every channel
    np.testing.assert_allclose(grey_filter(colour), sobel_x)  # luminance weights sum to 1
    name, cosine = nearest_edge_filter(-0.3 * sobel_x + 0.01)
    assert name == "-Sobel x" and cosine > 0.99  # opposite polarity: the same edge detector
    assert nearest_edge_filter(np.ones((7, 7))) is None  # only 3x3 kernels are compared
    filters = np.random.default_rng(0).normal(size=(3, 3, 3, 16))
    assert filters_and_edges(filters, tmp_path / "filters.png").stat().st_size > 1000


def test_readable_captions_whole_labels_and_only_tables_that_say_something() -> None:
    import dataclasses

    import numpy as np

    from pipeline.competitions import get_competition
    from pipeline.report.build import not_applying
    from pipeline.report.errors import error_table
    from pipeline.report.plots import CAPTION_CHARACTERS, CAPTION_POINTS, _caption

    assert CAPTION_POINTS * 90 / 72 >= 11  # pixels at the figures' 90 dpi
    caption = _caption("true disc, predicted triangle (0.83) and more words besides")
    assert max(len(line) for line in caption.splitlines()) <= CAPTION_CHARACTERS
    long = pd.DataFrame(
        {
            "time": ["2026-12-03T10:05:00Z"],
            "run": ["mobilenet-0.25-160px-holdout"],
            "cv_score": [0.1],
            "public_score": [0.1],
        }
    )
    assert submission_labels(long)[0].endswith("mobilenet-0.25-160px-holdout")
    evaluated = pd.DataFrame(
        {
            "grayscale": [False] * 6,  # every image in colour: nothing to compare
            "brightness": [40.0, 120.0, 200.0, 40.0, 120.0, 200.0],
            "width": [100, 300, 500, 100, 300, 500],
            "height": [100, 300, 500, 100, 300, 500],
            "wrong": np.array([1, 0, 0, 1, 0, 0], dtype=bool),
        }
    )
    assert "colour" not in set(error_table(evaluated, evaluated)["property"])
    digits = get_competition("digits-demo")
    assert "qwk" in not_applying(digits)
    assert "qwk" not in not_applying(dataclasses.replace(digits, metric="qwk"))
