"""Push the bundle, follow the kernel's session, fetch its outputs: through the Kaggle adapter.

The latest push is remembered in runs/<slug>/kernel/pushed.json (id, version, URL), so
`kernel status` and `kernel output` need no arguments.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from pipeline import layout
from pipeline.atomic import write_text
from pipeline.config import Config
from pipeline.kaggle_api import KaggleGateway, KernelError
from pipeline.kernel.bundle import build_bundle
from pipeline.kernel.metadata import kernel_slug, weights_route
from pipeline.run import Run

FINAL = ("COMPLETE", "ERROR", "CANCEL_ACKNOWLEDGED")
PUSHED = "pushed.json"


def push(config: Config, gateway: KaggleGateway) -> dict:
    """Build, validate and push the bundle; remember and return {id, version, url}."""
    username = gateway.username()
    folder = build_bundle(config, username, layout.kernel_dir(config))
    kernel = f"{username}/{kernel_slug(config)}"
    url, version = gateway.push_kernel(folder, kernel)
    pushed = {
        "id": kernel,
        "version": version,
        "url": url,
        "accelerator": config.kernel.accelerator,
        "pushed": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    write_text(folder / PUSHED, json.dumps(pushed, indent=2) + "\n")
    print(f"Pushed {kernel} version {version} ({config.kernel.accelerator}): {url}")
    print(weights_route(config))
    return pushed


def last_push(config: Config) -> dict:
    """What `push` remembered, or a KernelError saying to push first."""
    path = layout.kernel_dir(config) / PUSHED
    if not path.is_file():
        raise KernelError(
            f"no kernel pushed for {config.competition} from here ({path}): run `make kernel-push` first."
        )
    return json.loads(path.read_text())


def status(
    config: Config,
    gateway: KaggleGateway,
    wait: bool = False,
    sleep: Callable[[float], None] = time.sleep,
    first_delay: float = 5.0,
    max_delay: float = 60.0,
) -> str:
    """The status of the latest pushed version; with `wait`, poll with backoff until it ends.
    A kernel that ended in ERROR raises KernelError with Kaggle's failure message."""
    pushed = last_push(config)
    delay = first_delay
    while True:
        state, failure = gateway.kernel_status(pushed["id"], pushed["version"])
        print(
            f"{pushed['id']} version {pushed['version']}: {state}" + (f" ({failure})" if failure else ""),
            flush=True,
        )
        if not wait or state in FINAL:
            break
        sleep(delay)
        delay = min(delay * 2, max_delay)
    if state == "ERROR":
        raise KernelError(
            f"kernel {pushed['id']} version {pushed['version']} failed: {failure or 'no message'}"
        )
    return state


def fetch_outputs(config: Config, gateway: KaggleGateway) -> tuple[Path, Run | None]:
    """Download the latest version's outputs into runs/<slug>/kernel-v<N>/; return the folder and
    the run inside it that made its submission (None when it has none)."""
    pushed = last_push(config)
    target = layout.kernel_output_dir(config, pushed["version"])
    partial = target.with_name(f".partial-{target.name}")  # a fetch cut short never looks whole
    shutil.rmtree(partial, ignore_errors=True)
    files = gateway.kernel_output(pushed["id"], pushed["version"], partial)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(partial, target)
    print(f"{len(files)} output file(s) of {pushed['id']} version {pushed['version']} in {target}")
    runs = [Run(d) for d in sorted((target / "runs" / config.competition).glob("*")) if d.is_dir()]
    predicted = [run for run in runs if run.read_postprocessing() is not None]
    return target, predicted[-1] if predicted else None
