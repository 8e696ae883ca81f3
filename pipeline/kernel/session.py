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
from pipeline.config import Config, apply_settings, validate
from pipeline.kaggle_api import KaggleError, KaggleGateway, KernelError
from pipeline.kernel.bundle import build_bundle
from pipeline.kernel.metadata import kernel_slug, time_budget, weights_route
from pipeline.kernel.state import MANIFEST, RUNS, ResumeError, fold_seconds, pack_state, trial_seconds
from pipeline.kernel.weights import check_weights_dataset
from pipeline.run import Run

FINAL = ("COMPLETE", "ERROR", "CANCEL_ACKNOWLEDGED")
PUSHED = "pushed.json"


def push(
    config: Config, gateway: KaggleGateway, resume: bool = False, sleep: Callable[[float], None] = time.sleep
) -> dict:
    """Build, validate and push the bundle; remember and return {id, version, url, ...}. With
    `resume`, the previous version's state is published first and attached (carry_state)."""
    check_weights_dataset(config)
    username = gateway.username()
    resumes = None
    if resume:
        config, resumes = carry_state(config, gateway, username, sleep)
    folder = build_bundle(config, username, layout.kernel_dir(config))
    kernel = f"{username}/{kernel_slug(config)}"
    url, version = gateway.push_kernel(folder, kernel)
    pushed = {
        "id": kernel,
        "version": version,
        "url": url,
        "accelerator": config.kernel.accelerator,
        "competition": config.competition,
        "backbone": config.model.backbone,
        "task": config.kernel.task,
        "resumes": resumes,
        "pushed": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    write_text(folder / PUSHED, json.dumps(pushed, indent=2) + "\n")
    print(
        f"Pushed {kernel} version {version} ({config.kernel.accelerator}, task {config.kernel.task}): {url}"
    )
    print(weights_route(config))
    return pushed


def state_dataset(username: str, config: Config) -> str:
    """<username>/<kernel slug>-state: the private dataset that carries state between versions."""
    return f"{username}/{f'{kernel_slug(config)}-state'[-50:].lstrip('-')}"


def carry_state(
    config: Config, gateway: KaggleGateway, username: str, sleep: Callable[[float], None] = time.sleep
) -> tuple[Config, int]:
    """Publish the previous version's outputs as the state dataset and return `config` attaching
    it, and the version it continues. Refused (ResumeError) before any upload when there is no
    previous version, it is still running, it ran another competition or backbone, or the time
    budget would not fit one trial or fold of it."""
    try:
        previous = last_push(config)
    except KernelError as error:
        raise ResumeError(
            f"there is no previous version of kernel {username}/{kernel_slug(config)} pushed from here "
            "to resume: push once without --resume."
        ) from error
    ref = f"{previous['id']} version {previous['version']}"
    for key, wanted in (("competition", config.competition), ("backbone", config.model.backbone)):
        if previous.get(key, wanted) != wanted:
            raise ResumeError(
                f"{ref} ran {key} {previous[key]!r}, not {wanted!r}: resume with the same {key}, or push "
                "without --resume to start afresh."
            )
    outputs = layout.kernel_output_dir(config, previous["version"])
    if not outputs.is_dir():
        state, _ = gateway.kernel_status(previous["id"], previous["version"])
        if state not in FINAL:
            raise ResumeError(
                f"{ref} is still {state}: wait for it to end (make kernel-status WAIT=1), then resume."
            )
        outputs, _ = fetch_outputs(config, gateway)
    runs = outputs / RUNS / config.competition
    if not runs.is_dir():
        raise ResumeError(
            f"the outputs of {ref} in {outputs} hold no runs of {config.competition}: they belong to "
            "another competition or saved nothing; push without --resume."
        )
    check_budget(config, runs, ref)
    dataset = state_dataset(username, config)
    manifest = {
        "kernel": previous["id"],
        "version": previous["version"],
        "competition": config.competition,
        "backbone": config.model.backbone,
    }
    folder = pack_state(outputs, layout.kernel_state_dir(config), dataset, manifest)
    print(f"Carrying the state of {ref} as dataset {dataset} ({MANIFEST} inside) ...", flush=True)
    gateway.publish_dataset(folder, dataset, f"state of {ref}")
    wait_until_ready(gateway, dataset, sleep)
    attached = apply_settings(config, {"kernel.state_dataset": dataset}, "kernel push --resume")
    return validate(attached), int(previous["version"])


def check_budget(config: Config, runs: Path, ref: str) -> None:
    """Refuse a budget shorter than the shortest trial or fold that `ref` took (its own timings,
    on the same kind of machine)."""
    budget = time_budget(config)
    task = config.kernel.task
    share = config.kernel.tune_share if task == "all" else 1.0
    needs = []
    if task in ("tune", "all") and (trials := trial_seconds(runs)):
        needs.append(("tuning", budget * share, min(trials), "trial"))
    if task in ("train", "all") and (folds := fold_seconds(runs)):
        needs.append(("training", budget * (1 - share) if task == "all" else budget, min(folds), "fold"))
    for what, seconds, shortest, unit in needs:
        if seconds < shortest:
            raise ResumeError(
                f"the time budget gives {what} {seconds:.0f} s, less than one {unit} of {ref} took "
                f"({shortest:.0f} s): raise --time-budget (or kernel.tune_share) and push again."
            )


def wait_until_ready(
    gateway: KaggleGateway, dataset: str, sleep: Callable[[float], None], limit: float = 900.0
) -> None:
    """Poll the dataset's status until Kaggle has processed the new version (a kernel pushed
    before that would attach the previous one)."""
    waited, delay = 0.0, 5.0
    while (status := gateway.dataset_status(dataset)) != "ready":
        if status in ("failed", "deleted") or waited >= limit:
            raise KaggleError(
                f"dataset {dataset} is {status} after {waited:.0f} s: check it on Kaggle, then push --resume again."
            )
        sleep(delay)
        waited, delay = waited + delay, min(delay * 2, 60.0)


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
    delay, started = first_delay, time.monotonic()
    while True:
        state, failure = gateway.kernel_status(pushed["id"], pushed["version"])
        elapsed = f", {time.monotonic() - started:.0f} s since the first look" if wait else ""
        print(
            f"{pushed['id']} version {pushed['version']}: {state}{elapsed}"
            + (f" ({failure})" if failure else ""),
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
