"""The demos: the whole flow offline, on a generated competition served by the sandbox Kaggle API.

Above `pipeline.flow`: these call its steps the way a user does; nothing below imports them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from pipeline import flow, layout
from pipeline.competitions import get_competition
from pipeline.config import Config, apply_settings, validate
from pipeline.run import REPORT_PAGE


def served_archives(config: Config) -> dict[str, Path]:
    """The sandbox's competition archives, the demo competition generated first if it is not there."""
    from pipeline.demo.generate import generate
    from pipeline.demo.sandbox import find_archives

    competition = get_competition(config.competition)
    served = layout.sandbox_dir(config)
    if not (served / competition.archive).is_file():
        print(f"Generating the demo competition in {served} ...")
        generate(competition, served)
    return find_archives([served])


def demo(config: Config) -> None:
    """The whole flow offline on the generated demo competition, served by the sandbox Kaggle API:
    download, index, preview, k-fold training, prediction, submission and leaderboard."""
    from pipeline.demo.sandbox import SandboxServer, SandboxState, sandbox_environment

    archives = served_archives(config)
    with SandboxServer(SandboxState(archives)) as server, sandbox_environment(server.url):
        print(f"Sandbox Kaggle API on {server.url}")
        flow.download(config)
        flow.preview(config, batches=2)
        flow.train(config, report_after=False)  # reported at the end, with the post-processing choices
        submission = flow.predict(config)
        flow.submit(config, submission)
        flow.leaderboard(config)
    flow.report(config)


def kernel_demo(config: Config) -> None:
    """The Kaggle-kernel round trip offline: push to the sandbox, which runs the kernel locally,
    follow it, fetch its outputs, submit, and show the leaderboard."""
    from pipeline.demo.kernels import SandboxKernels
    from pipeline.demo.sandbox import SandboxServer, SandboxState, sandbox_environment

    archives = served_archives(config)
    kernels = SandboxKernels(archives, layout.sandbox_dir(config).parent / "kernels")
    with SandboxServer(SandboxState(archives, kernels=kernels)) as server, sandbox_environment(server.url):
        print(f"Sandbox Kaggle API on {server.url} (kernels run on this machine)")
        flow.kernel_push(config)
        flow.kernel_status(config, wait=True)
        outputs = flow.kernel_output(config, submit_it=True)
        flow.leaderboard(config)
    pages = sorted(outputs.rglob(REPORT_PAGE))
    if pages:
        print(f"The kernel's report: {pages[-1]}")


def kernel_resume_demo(config: Config, budget: float = 20.0) -> None:
    """The resume rehearsal offline: a tuning kernel stopped by its time budget, then a version
    pushed with --resume that finishes the study, trains with the best parameters, predicts; each
    version's outputs fetched, the last one submitted; every step timed."""
    from pipeline.demo.kernels import SandboxKernels
    from pipeline.demo.sandbox import SandboxServer, SandboxState, sandbox_environment

    tuning = validate(apply_settings(config, {"kernel.task": "tune", "train.time_budget": budget}, "demo"))
    resumed = validate(apply_settings(config, {"kernel.task": "all"}, "demo"))
    archives = served_archives(config)
    kernels = SandboxKernels(archives, layout.sandbox_dir(config).parent / "kernels")
    timings: list[tuple[str, float]] = []

    def step(name: str, action: Callable[[], object]) -> None:
        started = time.monotonic()
        action()
        timings.append((name, time.monotonic() - started))

    with SandboxServer(SandboxState(archives, kernels=kernels)) as server, sandbox_environment(server.url):
        print(f"Sandbox Kaggle API on {server.url} (kernels run on this machine)")
        step(f"push (tune, budget {budget:.0f} s)", lambda: flow.kernel_push(tuning))
        step("version 1 runs", lambda: flow.kernel_status(tuning, wait=True))
        step("fetch version 1", lambda: flow.kernel_output(tuning))
        step("push --resume (all)", lambda: flow.kernel_push(resumed, resume=True))
        step("version 2 runs", lambda: flow.kernel_status(resumed, wait=True))
        step("fetch and submit version 2", lambda: flow.kernel_output(resumed, submit_it=True))
        flow.leaderboard(resumed)
    print("Timings: " + "; ".join(f"{name} {seconds:.0f} s" for name, seconds in timings))
