"""The demos: the whole flow offline, on a generated competition served by the sandbox Kaggle API.

Above `pipeline.flow`: these call its steps the way a user does; nothing below imports them.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from pipeline import flow, layout
from pipeline.competitions import get_competition
from pipeline.config import Config, apply_settings, validate
from pipeline.run import REPORT_PAGE, Run


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


@contextlib.contextmanager
def kernel_sandbox(config: Config) -> Iterator[None]:
    """The sandbox Kaggle API serving the demo competition and running pushed kernels on this machine
    (under data/_sandbox/kernels), the Kaggle client pointed at it."""
    from pipeline.demo.kernels import SandboxKernels
    from pipeline.demo.sandbox import SandboxServer, SandboxState, sandbox_environment

    archives = served_archives(config)
    kernels = SandboxKernels(archives, layout.sandbox_dir(config).parent / "kernels")
    with SandboxServer(SandboxState(archives, kernels=kernels)) as server, sandbox_environment(server.url):
        print(f"Sandbox Kaggle API on {server.url} (kernels run on this machine)")
        yield


def kernel_demo(config: Config) -> None:
    """The Kaggle-kernel round trip offline: push to the sandbox, which runs the kernel locally,
    follow it, fetch its outputs, submit, and show the leaderboard."""
    with kernel_sandbox(config):
        flow.kernel_push(config)
        flow.kernel_status(config, wait=True)
        outputs = flow.kernel_output(config, submit_it=True)
        flow.leaderboard(config)
    pages = sorted(outputs.rglob(REPORT_PAGE))
    if pages:
        print(f"The kernel's report: {pages[-1]}")


class Steps:
    """Run a rehearsal's steps, timing each: `step(name, action)`, then `step.summary()`."""

    def __init__(self) -> None:
        self.timings: list[tuple[str, float]] = []

    def __call__(self, name: str, action: Callable[[], object]) -> object:
        started = time.monotonic()
        result = action()
        self.timings.append((name, time.monotonic() - started))
        return result

    def summary(self) -> str:
        """One line: every step and its seconds."""
        return "Timings: " + "; ".join(f"{name} {seconds:.0f} s" for name, seconds in self.timings)


def kernel_resume_demo(config: Config, budget: float = 20.0) -> None:
    """The resume rehearsal offline: a tuning kernel stopped by its time budget, then a version
    pushed with --resume that finishes the study, trains with the best parameters, predicts; each
    version's outputs fetched, the last one submitted; every step timed."""
    tuning = validate(apply_settings(config, {"kernel.task": "tune", "train.time_budget": budget}, "demo"))
    resumed = validate(apply_settings(config, {"kernel.task": "all"}, "demo"))
    step = Steps()
    with kernel_sandbox(config):
        step(f"push (tune, budget {budget:.0f} s)", lambda: flow.kernel_push(tuning))
        step("version 1 runs", lambda: flow.kernel_status(tuning, wait=True))
        step("fetch version 1", lambda: flow.kernel_output(tuning))
        step("push --resume (all)", lambda: flow.kernel_push(resumed, resume=True))
        step("version 2 runs", lambda: flow.kernel_status(resumed, wait=True))
        step("fetch and submit version 2", lambda: flow.kernel_output(resumed, submit_it=True))
        flow.leaderboard(resumed)
    print(step.summary())


def kernel_fanout_demo(config: Config, tune_shards: int = 2) -> None:
    """The fan-out rehearsal offline: the demo's folds pushed as `kernel.shards` kernels at once to the
    sandbox (which runs them here, side by side), followed as one table, gathered into one run,
    predicted and submitted; then a tuning group of `tune_shards` kernels sharing one study (in a
    throwaway PostgreSQL when the server and driver are installed, else one journal per shard merged
    by the gathering) of `tune.trials` trials. Every step timed."""
    import optuna

    from pipeline.demo.postgres import missing, throwaway_postgres
    from pipeline.fit.tune import load_study

    training = validate(apply_settings(config, {"kernel.task": "train"}, "demo"))
    step = Steps()
    with kernel_sandbox(config):
        step("download and index (the split is made here)", lambda: flow.download(training))
        step(f"push {training.kernel.shards} training shards", lambda: flow.kernel_push(training))
        step("the shards run", lambda: flow.kernel_status(training, wait=True))
        gathered = Run(step("gather, predict, submit", lambda: flow.kernel_output(training, submit_it=True)))
        oof, indexed = gathered.read_oof(), flow.index(training).train
        print(
            f"Gathered run {gathered.name}: {len(gathered.members())} folds; out-of-fold predictions of "
            f"{oof['id'].nunique()} distinct images in {len(oof)} rows, of the {len(indexed)} training images"
        )
        flow.leaderboard(training)
        lacking = missing()
        print(
            f"Tuning group: {tune_shards} shards, one study of {config.tune.trials} trials "
            + (f"(journals merged here: {lacking} is not installed)" if lacking else "in PostgreSQL")
        )
        with contextlib.ExitStack() as stack:
            storage = "" if lacking else stack.enter_context(throwaway_postgres())
            tuning = validate(
                apply_settings(
                    config,
                    {
                        "kernel.task": "tune",
                        "kernel.shards": tune_shards,
                        "tune.storage": storage,
                        "tune.study": f"{config.tune.study}-{time.strftime('%Y%m%dT%H%M%S')}",  # afresh
                    },
                    "demo",
                )
            )
            step(f"push {tune_shards} tuning shards", lambda: flow.kernel_push(tuning))
            step("the tuning shards run", lambda: flow.kernel_status(tuning, wait=True))
            step("gather the study", lambda: flow.kernel_output(tuning))
            study = load_study(tuning)
            finished = study.get_trials(
                states=(optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
            )
            drawn = {json.dumps(t.params, sort_keys=True) for t in study.trials}
            print(
                f"Study {tuning.tune.study}: {len(study.trials)} trials ({len(finished)} finished), "
                f"{len(drawn)} distinct parameter sets"
            )
    print(step.summary())
