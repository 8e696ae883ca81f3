"""What is in this picture: a finished, predicted run's whole ensemble (the members its submission
averaged, under its TTA views, in its averaging space, post-processed as chosen on its OOF
predictions) applied to image files. The numbers are those `predict` gives the same images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.acquire.index import check_image
from pipeline.competitions import Competition
from pipeline.config import Config, ConfigError
from pipeline.data.input_pipeline import make_dataset
from pipeline.infer.postprocess import apply_postprocessing, average
from pipeline.infer.tta import predict_views
from pipeline.model.classifier import load_trained_model
from pipeline.model.families import family_of
from pipeline.registry import get_backbone
from pipeline.run import Run

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif"}  # what TensorFlow decodes


def image_files(photos: list[Path]) -> tuple[list[Path], list[str]]:
    """The image files among `photos` (a folder gives the images inside it, sorted), and one line
    for each one that cannot be read."""
    found, problems = [], []
    for photo in photos:
        candidates = (
            sorted(p for p in photo.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
            if photo.is_dir()
            else [photo]
        )
        if photo.is_dir() and not candidates:
            problems.append(f"{photo}: a folder with no image in it")
        for path in candidates:
            if not path.is_file():
                problems.append(f"{path}: no such file")
                continue
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                problems.append(f"{path}: not a {', '.join(sorted(IMAGE_SUFFIXES))} file (convert it to PNG)")
                continue
            checked = check_image(path)
            if checked.ok:
                found.append(path)
            else:
                problems.append(f"{path}: {checked.reason}")
    return found, problems


def classify_images(config: Config, competition: Competition, run: Run, paths: list[Path]) -> pd.DataFrame:
    """path, class, probability (of that class) and every class's probability, per image."""
    chosen = run.read_postprocessing()
    if chosen is None:
        raise ConfigError(
            f"run {run.name} has not predicted yet, so its ensemble and post-processing are not chosen: run "
            f"`predict --run {run.name}` first"
        )
    family_of(get_backbone(config.model.backbone))  # its layers registered: the saved models load
    members = [m for m in (*run.members(), *run.refit_members()) if m.name in chosen.models] or run.members()
    images = make_dataset(pd.DataFrame({"path": [str(p) for p in paths]}), config, training=False)
    views = [predict_views(load_trained_model(m.model_path), images, chosen.views) for m in members]
    averaged = average(np.concatenate(views), chosen.average)
    columns = apply_postprocessing(chosen, competition.submission_kind, averaged)
    if "p0" in columns:
        p = np.stack([columns[f"p{k}"] for k in range(competition.num_classes)], axis=1)
    else:
        p = np.stack([1 - columns["probability"], columns["probability"]], axis=1)
    labels = columns.get("label", p.argmax(axis=1))
    return pd.DataFrame(
        {
            "path": [str(path) for path in paths],
            "class": [competition.classes[int(k)] for k in labels],
            "probability": p[np.arange(len(paths)), np.asarray(labels, dtype=int)],
            **{f"p({name})": p[:, k] for k, name in enumerate(competition.classes)},
        }
    )
