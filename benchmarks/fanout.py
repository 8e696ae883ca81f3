"""The demo's k folds in one kernel session against the same folds in k kernels at once (a kernel
group), both run by the sandbox on this machine, same configuration and seeds: the OOF score and
the submissions side by side, the wall time of each, and what one fold's time says about Kaggle.

    python -m benchmarks.fanout [--shards 3]

On a machine of few cores the shards contend for them (they run side by side here); on Kaggle each
shard is a session of its own. Writes runs/bench/fanout-<UTC time>.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import statistics
import time
from pathlib import Path

import numpy as np

from benchmarks.bench import load_average, markdown_table
from pipeline import flow, layout
from pipeline.competitions import get_competition
from pipeline.config import Config, apply_settings, load_config, validate
from pipeline.demo.flows import served_archives
from pipeline.demo.kernels import SandboxKernels
from pipeline.demo.sandbox import SandboxServer, SandboxState, sandbox_environment
from pipeline.kaggle_api import KaggleGateway
from pipeline.kernel import group, session
from pipeline.run import Run
from pipeline.tables import read_id_csv

KAGGLE_START = 120.0  # seconds a Kaggle session takes to start and unpack the inputs (assumed, not measured)


def poll(seconds: float) -> None:
    time.sleep(min(seconds, 3.0))


def configure(work: Path, shards: int) -> Config:
    """The demo (3 folds, no refit) as a training kernel on the CPU, writing under `work`."""
    config = load_config(["demo", "demo-fanout"], environ={})
    values = {
        "paths.data_root": str(work / "data"),
        "paths.runs_root": str(work / "runs"),
        "paths.submissions_root": str(work / "submissions"),
        "train.folds": shards,
        "train.recipe": "finetune",
        "kernel.task": "train",
        "kernel.accelerator": "none",
        "data.deterministic": True,  # identical batches: two runs of the same fold can be compared
    }
    return validate(apply_settings(config, values, "benchmark"))


def one_session(config: Config) -> tuple[float, float, Path]:
    """Every fold in one sandbox kernel: (seconds from push to fetched outputs, OOF log loss, submission)."""
    single = validate(apply_settings(config, {"kernel.shards": 1, "kernel.slug": "serial"}, "benchmark"))
    started = time.monotonic()
    session.push(single, KaggleGateway())
    session.status(single, KaggleGateway(), wait=True, sleep=poll)
    outputs, run = session.fetch_outputs(single, KaggleGateway())
    seconds = time.monotonic() - started
    assert run is not None, f"the one-session kernel predicted nothing: see its log in {outputs}"
    return seconds, run.cv_score("log_loss"), outputs / "submission.csv"


def in_shards(config: Config) -> tuple[float, float, Path, Run]:
    """The same folds in a group of kernel.shards kernels: (seconds from push to the gathered
    submission, OOF log loss of the gathered run, submission, run)."""
    started = time.monotonic()
    flow.kernel_push(config)
    group.status(config, KaggleGateway(), wait=True, sleep=poll)
    run = Run(flow.kernel_gather(config))
    seconds = time.monotonic() - started
    return seconds, run.cv_score("log_loss"), layout.latest_submission(config), run


def largest_difference(a: Path, b: Path, id_column: str, column: str) -> tuple[float, float]:
    """(largest, mean) absolute difference between two submissions' probabilities, matched on id."""
    merged = read_id_csv(a).merge(read_id_csv(b), on=id_column, validate="one_to_one")
    gaps = np.abs(merged[f"{column}_x"].astype(float) - merged[f"{column}_y"].astype(float))
    return float(gaps.max()), float(gaps.mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--shards", type=int, default=3, help="kernels of the group, one fold each (default: 3)"
    )
    args = parser.parse_args()
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    work = layout.bench_dir() / f"fanout-{stamp}"
    config = configure(work, args.shards)
    archives = served_archives(config)
    kernels = SandboxKernels(archives, work / "kernels")
    with SandboxServer(SandboxState(archives, kernels=kernels)) as server, sandbox_environment(server.url):
        flow.download(config)
        first_seconds, first_oof, first_csv = one_session(config)
        second_seconds, second_oof, second_csv = one_session(config)  # the same again: training's own spread
        shard_seconds, shard_oof, shard_csv, run = in_shards(config)
    competition = get_competition(config.competition)
    columns = (competition.id_column, competition.label_column)
    itself = largest_difference(first_csv, second_csv, *columns)
    sharded = largest_difference(first_csv, shard_csv, *columns)
    fold = statistics.median(m.read_metrics()["seconds"] for m in run.members())
    k, n = config.train.folds, args.shards
    rows = [
        {
            "measure": "OOF log loss (all folds)",
            "shards": f"{shard_oof:.5f}",
            "one session, twice": f"{first_oof:.5f}, {second_oof:.5f}",
        },
        {
            "measure": "submission against the first session's: largest / mean difference of a probability",
            "shards": f"{sharded[0]:.2g} / {sharded[1]:.2g}",
            "one session, twice": f"{itself[0]:.2g} / {itself[1]:.2g} (the second against the first)",
        },
        {
            "measure": "wall time on this machine, push to results",
            "shards": f"{shard_seconds:.0f} s ({n} kernels side by side on {os.cpu_count()} cores)",
            "one session, twice": f"{first_seconds:.0f} s, {second_seconds:.0f} s",
        },
        {
            "measure": "one fold's training (median of the shards' folds)",
            "shards": f"{fold:.1f} s",
            "one session, twice": "-",
        },
        {
            "measure": f"Kaggle estimate: {k} folds of F seconds, a session starting in {KAGGLE_START:.0f} s",
            "shards": f"{KAGGLE_START:.0f} s + {math.ceil(k / n)} x F",
            "one session, twice": f"{KAGGLE_START:.0f} s + {k} x F",
        },
    ]
    report = (
        f"# Fan-out: {k} folds in one kernel vs {n} kernels ({stamp})\n\n"
        f"All run by the sandbox on this machine ({os.cpu_count()} CPUs, load average {load_average()}): "
        f"the demo competition, small CNN at {config.data.image_size} px, seed {config.data.seed}, "
        "deterministic batches. The one-session kernel runs twice: how far two runs of the same settings "
        "land from each other is the yardstick for the shards.\n\n"
        f"{markdown_table(rows)}\n\n"
        f"With F = 30 min (a large backbone's fold on a T4), the {k} folds take "
        f"{(KAGGLE_START + k * 1800) / 3600:.1f} h in one session and "
        f"{(KAGGLE_START + math.ceil(k / n) * 1800) / 3600:.1f} h in {n}; the GPU hours counted against the "
        f"weekly quota are about the same ({k} x F plus each session's start).\n"
    )
    print(report)
    (layout.bench_dir() / f"fanout-{stamp}.md").write_text(report)


if __name__ == "__main__":
    main()
