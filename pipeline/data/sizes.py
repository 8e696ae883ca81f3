"""Image sizes and the memory they take, known before TensorFlow loads: the side images are
decoded at, and where the cache of resized images can live (`data.cache = "auto"`)."""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
from pathlib import Path

from pipeline.config import Config, ConfigError

SAFE_SHARE = 0.5  # of the memory available: the most the image cache may take (the model needs the rest)


def load_size(image_size: int, crop: float) -> int:
    """Side at which images are decoded so that a crop of `crop` leaves `image_size`."""
    return image_size if crop <= 0 else math.ceil(image_size / (1.0 - crop))


def cache_bytes(config: Config, images: int) -> int:
    """Bytes of the cache of `images` resized images (uint8 RGB) at the configured size."""
    side = load_size(config.data.image_size, config.augment.crop)
    return images * side * side * 3


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux: MemAvailable), None when unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _gb(n: float) -> str:
    return f"{n / 1e9:.1f} GB"


def plan_cache(config: Config, images: int, disk_folder: Path, available: int | None = None) -> Config:
    """`config` with data.cache decided before any memory is spent: "auto" becomes memory when the
    cache of `images` fits in a safe share of the memory available, else disk (when the disk
    holding `disk_folder` has room), else none, with a one-line notice; "memory" asked explicitly
    that cannot fit is refused with the figures."""
    available = available_memory() if available is None else available
    asked = config.data.cache
    needed = cache_bytes(config, images)
    fits = available is None or needed <= SAFE_SHARE * available
    if asked == "memory" and not fits:
        raise ConfigError(
            f"data.cache = 'memory' needs about {_gb(needed)} for {images:,} images at "
            f"{config.data.image_size} px, more than half of the {_gb(available)} available: use "
            "--cache disk (or none), or a smaller --image-size"
        )
    if asked != "auto":
        return config
    chosen = "memory" if fits else "disk"
    if chosen == "disk":
        existing = next(p for p in [disk_folder, *disk_folder.parents] if p.exists())
        chosen = "disk" if needed * 1.1 < shutil.disk_usage(existing).free else "none"
        where = f"on disk in {disk_folder}" if chosen == "disk" else "nowhere (no room on disk either)"
        print(
            f"The image cache would need {_gb(needed)} ({images:,} images at {config.data.image_size} px), "
            f"more than half of the {_gb(available)} of memory available: caching {where} instead."
        )
    return dataclasses.replace(config, data=dataclasses.replace(config.data, cache=chosen))
