"""`weights-dataset`: the configured backbones' ImageNet notop files as one private Kaggle dataset,
for kernels that run offline (code competitions, or --internet off).

The files come from where Keras keeps what it downloaded (~/.keras/models/, or $KERAS_HOME/models/)
or from model.weights when that names the file. A manifest of the files stays beside the folder,
so that `kernel push` names a backbone the dataset lacks before pushing.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from pipeline import layout
from pipeline.atomic import write_text
from pipeline.config import Config
from pipeline.kaggle_api import KernelError
from pipeline.kernel.state import write_dataset_metadata
from pipeline.registry import get_backbone

MANIFEST = "weights-dataset.json"  # beside the folder: {"id": owner/slug, "files": [...]}


def keras_cache() -> Path:
    """Where keras.applications keeps downloaded weights: $KERAS_HOME/models or ~/.keras/models."""
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"


def wanted_backbones(config: Config) -> list[str]:
    """The backbones the configuration trains or stacks whose weights are files (keras.applications'
    notop .h5; presets come as Kaggle Models), each once, in order."""
    names = [config.model.backbone, *(b.strip() for b in config.stack.backbones.split(",") if b.strip())]
    return [n for n in dict.fromkeys(names) if get_backbone(n).family_entry.weights == "file"]


def find_weights_file(config: Config, backbone: str) -> Path:
    """The notop file of `backbone` on this machine, or a KernelError saying how to get it."""
    name = get_backbone(backbone).weights_file
    configured = Path(config.model.weights)
    for candidate in (configured, configured.parent / name, keras_cache() / name):
        if candidate.name == name and candidate.is_file():
            return candidate
    raise KernelError(
        f"no {name} in {keras_cache()} for {backbone}: download it once where there is internet "
        f"(keras.applications.{get_backbone(backbone).constructor}(weights='imagenet', include_top=False)) "
        "or pass --weights <path to the file>."
    )


def dataset_id(config: Config, username: str) -> str:
    """kernel.weights_dataset, or <username>/pipeline-weights."""
    return config.kernel.weights_dataset or f"{username}/pipeline-weights"


def pack_weights(config: Config, username: str) -> Path:
    """The dataset folder (every wanted backbone's file, dataset-metadata.json) and its manifest;
    return the folder. Every file is found before anything is copied."""
    dataset = dataset_id(config, username)
    files = [find_weights_file(config, b) for b in wanted_backbones(config)]
    if not files:
        raise KernelError(f"{config.model.backbone} needs no pretrained weights: there is nothing to upload.")
    folder = layout.weights_dataset_dir(config)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for path in files:
        shutil.copyfile(path, folder / path.name)
    write_dataset_metadata(folder, dataset, "other")
    manifest = {"id": dataset, "files": sorted(p.name for p in files)}
    write_text(folder.with_name(MANIFEST), json.dumps(manifest, indent=2) + "\n")
    return folder


def check_weights_dataset(config: Config) -> None:
    """When kernel.weights_dataset is the one packed here, refuse (KernelError) a backbone whose
    file it lacks; a dataset not packed here is left to the kernel to check."""
    path = layout.weights_dataset_dir(config).with_name(MANIFEST)
    if not config.kernel.weights_dataset or not path.is_file():
        return
    manifest = json.loads(path.read_text())
    if manifest["id"] != config.kernel.weights_dataset:
        return
    missing = [
        get_backbone(b).weights_file
        for b in wanted_backbones(config)
        if get_backbone(b).weights_file not in manifest["files"]
    ]
    if missing:
        raise KernelError(
            f"dataset {manifest['id']} holds {', '.join(manifest['files'])} but not {', '.join(missing)}: "
            "run `make weights-dataset` with this configuration to add it, then push."
        )
