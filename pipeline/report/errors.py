"""What the errors have in common: error rates by image property (grayscale or colour, size,
aspect ratio, brightness), with each group's share of the training images, and a one-line
finding when one group's error rate stands far above the rest's.

Pure functions of tables and image files; no model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

GRAY_TOLERANCE = 6  # largest channel difference (of 255) still counted as a grayscale pixel
SIZE_EDGES = (0, 200, 400, 800, 10**9)  # the longer side, in pixels
ASPECT_EDGES = (0, 0.8, 1.25, 100)  # width / height: portrait, square-ish, landscape
BRIGHTNESS_EDGES = (0, 85, 170, 256)  # mean luminance
MIN_GROUP = 5  # images a group needs before its error rate is compared


def image_properties(path: Path) -> dict[str, float | bool]:
    """Grayscale (all pixels' channels within GRAY_TOLERANCE of each other) and mean luminance of
    one image, read from a 64 px thumbnail."""
    with Image.open(path) as opened:
        opened.draft("RGB", (64, 64))
        image = opened.convert("RGB")
        image.thumbnail((64, 64))
    pixels = np.asarray(image, dtype=np.int16)
    spread = pixels.max(axis=-1) - pixels.min(axis=-1)
    luminance = pixels @ np.array([0.299, 0.587, 0.114])
    return {
        "grayscale": bool((spread <= GRAY_TOLERANCE).mean() > 0.98),
        "brightness": float(luminance.mean()),
    }


def _bucket(values: pd.Series, edges: tuple[float, ...], names: tuple[str, ...]) -> pd.Series:
    return pd.cut(values, bins=list(edges), labels=list(names), right=False).astype(str)


def groups(frame: pd.DataFrame) -> pd.DataFrame:
    """One column per property (colour, size, aspect ratio, brightness) naming each image's group,
    from columns grayscale, brightness, width and height."""
    longer = frame[["width", "height"]].max(axis=1)
    return pd.DataFrame(
        {
            "colour": np.where(frame["grayscale"], "grayscale", "colour"),
            "size": _bucket(longer, SIZE_EDGES, ("< 200 px", "200-399 px", "400-799 px", ">= 800 px")),
            "aspect ratio": _bucket(
                frame["width"] / frame["height"], ASPECT_EDGES, ("portrait", "square-ish", "landscape")
            ),
            "brightness": _bucket(frame["brightness"], BRIGHTNESS_EDGES, ("dark", "medium", "bright")),
        },
        index=frame.index,
    )


def error_table(evaluated: pd.DataFrame, training: pd.DataFrame) -> pd.DataFrame:
    """Error rate per group of every property: `evaluated` has the property columns and a boolean
    `wrong`; `training` the property columns of the training images (for each group's share)."""
    grouped, trained = groups(evaluated), groups(training)
    rows = []
    for prop in grouped.columns:
        if grouped[prop].nunique() < 2:  # every image in one group: nothing to compare
            continue
        for name, members in evaluated.groupby(grouped[prop]):
            rows.append(
                {
                    "property": prop,
                    "group": name,
                    "images": len(members),
                    "errors": int(members["wrong"].sum()),
                    "error rate": float(members["wrong"].mean()),
                    "share of training images": float((trained[prop] == name).mean()),
                }
            )
    return pd.DataFrame(rows)


def finding(table: pd.DataFrame) -> str | None:
    """One sentence when a group's error rate is far above the rest of its property's (at least
    twice, and 10 points higher, with MIN_GROUP images on both sides), else None."""
    best: tuple[float, str] | None = None
    for prop, rows in table.groupby("property"):
        for row in rows.to_dict("records"):
            rest = rows[rows["group"] != row["group"]]
            others = int(rest["images"].sum())
            if row["images"] < MIN_GROUP or others < MIN_GROUP:
                continue
            rate, rest_rate = row["error rate"], int(rest["errors"].sum()) / others
            if (
                rate >= 2 * rest_rate
                and rate - rest_rate >= 0.10
                and (best is None or rate - rest_rate > best[0])
            ):
                best = (
                    rate - rest_rate,
                    f"errors are concentrated in {row['group']} images (by {prop}): {rate:.0%} of them are "
                    f"wrong, against {rest_rate:.0%} of the others; they are "
                    f"{row['share of training images']:.0%} of the training images",
                )
    return None if best is None else best[1]


def dominant_group(gallery: pd.DataFrame, everyone: pd.DataFrame, share: float = 0.8) -> str | None:
    """A note such as '100% of them are grayscale (colour)' when at least `share` of a gallery's
    images fall in one group that is under half of `everyone`; else None."""
    overall = groups(everyone)
    for prop, values in groups(gallery).items():
        counts = values.value_counts(normalize=True)
        top = counts.index[0]
        if len(gallery) >= 3 and counts.iloc[0] >= share and (overall[prop] == top).mean() < 0.5:
            return f"{counts.iloc[0]:.0%} of them are {top} (by {prop})"
    return None
