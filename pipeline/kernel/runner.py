"""Inside the Kaggle kernel: find the inputs, check the devices and weights in the first seconds,
then index -> train -> predict, leaving the results in /kaggle/working.

PIPELINE_KAGGLE_ROOT maps /kaggle elsewhere (the sandbox and the tests run kernels locally).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from pipeline import layout
from pipeline.atomic import write_text
from pipeline.config import Config, apply_settings, internet_enabled, use_backend, validate
from pipeline.kernel.metadata import time_budget
from pipeline.kernel.shards import SHARD_FILE, Share, decode_split, digest
from pipeline.kernel.state import Progress, fail_running_trials, find_state, journal_trials, restore_state
from pipeline.native_logs import load_tensorflow
from pipeline.registry import Backbone, get_backbone

KAGGLE_ROOT_ENV = "PIPELINE_KAGGLE_ROOT"
SANDBOX_ENV = "PIPELINE_KERNEL_SANDBOX"  # set by the sandbox: a GPU/TPU push may run on its CPU


class KernelSetupError(RuntimeError):
    """The kernel cannot do its work as pushed; the message says what to attach or change."""


def kaggle_root() -> Path:
    """/kaggle, or where PIPELINE_KAGGLE_ROOT points."""
    return Path(os.environ.get(KAGGLE_ROOT_ENV, "/kaggle"))


def find_competition_root(input_dir: Path, slug: str) -> Path:
    """The folder holding <slug>/ among Kaggle's two layouts: /kaggle/input/<slug>/ and
    /kaggle/input/competitions/<slug>/."""
    for root in (input_dir, input_dir / "competitions"):
        if (root / slug).is_dir():
            return root
    raise KernelSetupError(
        f"the competition's files are not in {input_dir / slug} nor {input_dir / 'competitions' / slug}: "
        f"add the competition {slug!r} as an input of the kernel (competition_sources)."
    )


def find_weights(config: Config, input_dir: Path) -> str:
    """The weights setting to use here: an attached *_notop.h5 when there is one, 'imagenet' with
    internet on, else a KernelSetupError naming the file to attach."""
    spec = get_backbone(config.model.backbone)
    wanted = config.model.weights
    if not spec.pretrained or wanted in ("", "none") or (wanted != "imagenet" and Path(wanted).exists()):
        return wanted
    if spec.family_entry.weights == "preset":
        return find_preset(spec, input_dir, internet_enabled(config))
    name = spec.weights_file if wanted == "imagenet" else Path(wanted).name
    found = sorted(input_dir.rglob(name)) if input_dir.is_dir() else []
    if found:
        print(f"Weights: {found[0]} (attached)")
        return str(found[0])
    if internet_enabled(config) and wanted == "imagenet":
        return "imagenet"
    raise KernelSetupError(
        f"no {name} under {input_dir} and the kernel has no internet: attach a dataset holding it "
        f"(--weights-dataset owner/slug; the file is keras.applications.{spec.constructor}'s notop "
        "weights), or push with --internet on (not allowed in code competitions), or --weights none."
    )


def find_preset(spec: Backbone, input_dir: Path, internet: bool) -> str:
    """The attached Kaggle Model's folder holding `spec`'s preset (Kaggle mounts a model at
    /kaggle/input/<model>/<framework>/<variation>/<version>/), 'imagenet' with internet on (kagglehub
    downloads it), else a KernelSetupError naming the model to attach."""
    found = sorted(
        config.parent
        for config in (input_dir.rglob("config.json") if input_dir.is_dir() else [])
        if spec.constructor in config.parent.parts and (config.parent / "metadata.json").is_file()
    )
    if found:
        print(f"Weights: keras-hub preset {found[0]} (the attached Kaggle Model)")
        return str(found[0])
    if internet:
        return "imagenet"
    raise KernelSetupError(
        f"no {spec.constructor} preset under {input_dir} and the kernel has no internet: attach the Kaggle "
        f"Model {spec.model_source} (kernel push does it with --weights imagenet), or push with --internet on."
    )


def describe_devices() -> tuple[list[str], list[str]]:
    """(GPUs, TPUs) TensorFlow sees here, after printing the versions and devices."""
    import keras
    import tensorflow as tf

    from pipeline.model.devices import find_tpu

    if keras.backend.backend() == "jax":
        import jax

        devices = keras.distribution.list_devices()
        gpus = [d for d in devices if d.split(":")[0] in ("gpu", "cuda")]
        tpus = [d for d in devices if d.startswith("tpu")]
        library = f"JAX {jax.__version__}"
    else:
        gpus = [d.name for d in tf.config.list_physical_devices("GPU")]
        tpu = find_tpu()
        tpus = [] if tpu is None else [str(tpu.master())]
        library = f"TensorFlow {tf.__version__}"
    print(
        f"Python {platform.python_version()}, {library}, Keras {keras.__version__} ({keras.backend.backend()}); "
        f"GPUs: {gpus or 'none'}; TPU: {tpus or 'none'}; CPUs: {os.cpu_count()}"
    )
    return gpus, tpus


def check_accelerator(accelerator: str, gpus: list[str], tpus: list[str], sandbox: bool) -> None:
    """Refuse to run a GPU or TPU push quietly on the CPU."""
    missing = (accelerator == "gpu" and not gpus) or (accelerator == "tpu" and not tpus)
    if not missing:
        return
    if sandbox:
        print(f"Sandbox: this {accelerator} kernel runs on the local CPU.")
        return
    hint = (
        "Kaggle's current TPU image ships a CPU-only TensorFlow: push with --backend jax (Keras on JAX "
        "finds the TPU), or --accelerator gpu"
        if accelerator == "tpu"
        else "check the kernel's accelerator setting and your GPU quota (`kaggle quota`)"
    )
    raise KernelSetupError(f"pushed for a {accelerator} but TensorFlow finds none here; {hint}.")


def scratch_dir(root: Path) -> Path:
    """Where the kernel unpacks images, outside the saved outputs: /tmp/pipeline-data on Kaggle
    (a fresh machine each session), <root>/scratch where PIPELINE_KAGGLE_ROOT maps /kaggle (the
    sandbox runs many kernels on one machine: a shared /tmp would hand one the images of another)."""
    if KAGGLE_ROOT_ENV in os.environ:
        return root / "scratch"
    return Path(tempfile.gettempdir()) / "pipeline-data"


def kernel_config(values: dict[str, Any], root: Path) -> Config:
    """The bundled configuration with this machine's paths, weights and time budget."""
    bundled = validate(apply_settings(Config(), values, "bundled configuration"))
    input_dir = root / "input"
    competition_root = find_competition_root(input_dir, bundled.competition)
    scratch = scratch_dir(root)
    budget = time_budget(bundled)
    return validate(
        apply_settings(
            bundled,
            {
                **layout.kaggle_kernel_paths(root, competition_root, scratch),
                "model.weights": find_weights(bundled, input_dir),
                "train.time_budget": budget,
            },
            "kernel environment",
        )
    )


def find_sample_submission(config: Config) -> Path:
    """The competition's sample submission among its unpacked files."""
    from pipeline.acquire.unpack import unpack_competition
    from pipeline.competitions import get_competition

    files = unpack_competition(
        get_competition(config.competition), layout.input_dir(config), layout.competition_dir(config)
    )
    return files.sample_submission


def main(values: dict[str, Any], shard: dict[str, Any] | None = None) -> Path | None:
    """Run the bundled configuration's task (kernel.task): train, tune, or all, continuing the
    state a `--resume` push carried; return the submission written to /kaggle/working (None for a
    tuning-only kernel). The log ends with what is done and what the next version would do.
    With `shard` (a kernel of a group), its share of the work alone (run_share)."""
    from pipeline import flow

    root = kaggle_root()
    config = kernel_config(values, root)
    use_backend(config.backend)  # before anything imports Keras
    load_tensorflow()
    gpus, tpus = describe_devices()
    check_accelerator(config.kernel.accelerator, gpus, tpus, sandbox=bool(os.environ.get(SANDBOX_ENV)))
    task, budget, started = config.kernel.task, config.train.time_budget, time.monotonic()
    print(f"Task: {task}; time budget {budget / 3600:.2f} h", flush=True)
    if shard is not None:
        run_share(config, values, shard, root / "working")
        return None
    carried = find_state(root / "input")
    if carried is not None:
        manifest = restore_state(carried, root / "working")
        failed = fail_running_trials(layout.tune_dir(config))
        print(
            f"Resumed from {manifest['kernel']} version {manifest['version']}: "
            f"{describe(progress(config, None))}"
            + (f"; trials {failed} were cut off and count as failed" if failed else ""),
            flush=True,
        )
    flow.index(config)
    wanted_trials = config.tune.trials
    if task in ("tune", "all"):
        config = _tune(config, budget * (config.kernel.tune_share if task == "all" else 1.0))
        if task == "tune":
            finish(config, None, task, wanted_trials)
            return None
        left = max(budget - (time.monotonic() - started), 60.0)
        config = validate(apply_settings(config, {"train.time_budget": left}, "time left after tuning"))
    flow.train(config, report_after=False)  # reported below, with the test-time predictions
    submission = flow.predict(config)
    flow.report(config)
    final = root / "working" / "submission.csv"
    shutil.copyfile(submission, final)
    sample = find_sample_submission(config)
    shutil.copyfile(sample, root / "working" / sample.name)  # to validate against where the data is not
    finish(config, final, task, wanted_trials)
    return final


def progress(config: Config, submission: Path | None, trials_wanted: int | None = None) -> Progress:
    """What this kernel's working folder holds of the configured study and run."""
    from pipeline.run import Run

    run = Run(layout.kfold_run_dir(config))
    return Progress(
        trials=journal_trials(layout.study_journal(config)),
        trials_wanted=trials_wanted or config.tune.trials,
        folds=sum(run.fold(k).is_finished for k in range(config.train.folds)),
        folds_wanted=config.train.folds,
        refits=len(run.refit_members()),
        refits_wanted=config.train.refit,
        submission=submission is not None,
    )


def describe(done: Progress) -> str:
    """Trials and folds done, in a few words."""
    return (
        f"{done.trials} of {done.trials_wanted} trials, {done.folds} of {done.folds_wanted} folds, "
        f"{done.refits} of {done.refits_wanted} refit models finished"
    )


def finish(config: Config, submission: Path | None, task: str, trials_wanted: int) -> None:
    """The log's last lines: what is done, where the submission is, what a resumed version does."""
    done = progress(config, submission, trials_wanted)
    print(f"Kernel finished ({task}): {describe(done)}.", flush=True)
    if submission is not None:
        print(f"Submission: {submission}", flush=True)
    print(done.next_step(task), flush=True)


def _tune(config: Config, seconds: float) -> Config:
    """Run what is left of the study (tune.trials in all, a carried study counted) for at most
    `seconds` (no trial starts past them); return `config` with the best parameters found
    (unchanged when no trial finished)."""
    from pipeline import flow
    from pipeline.fit.tune import best_params_path, load_params, with_params

    timeout = min(config.tune.timeout or seconds, seconds)
    left = config.tune.trials - journal_trials(layout.study_journal(config))
    if left > 0:
        limits = {"tune.timeout": timeout, "tune.trials": left}
        flow.tune(validate(apply_settings(config, limits, "kernel time budget")))
    finished = journal_trials(layout.study_journal(config))
    print(f"Tuning: {finished} of {config.tune.trials} trials finished", flush=True)
    path = best_params_path(config)
    if not finished or not path.is_file():
        return config
    params = load_params(path)
    print(f"Training with the best parameters: {params}", flush=True)
    return with_params(config, params)


def run_share(config: Config, values: dict[str, Any], shard: dict[str, Any], working: Path) -> dict[str, Any]:
    """A shard of a group: write the fold split it was shipped, do its share (folds, refits and their
    test predictions; or trials of the study) and leave shard.json (share, configuration, split,
    what got done) beside the runs for `kernel output` to check and merge; return that record."""
    from pipeline import flow
    from pipeline.atomic import write_atomically
    from pipeline.fit.tune import load_study, worker_trials

    share = Share.from_dict(shard["share"])
    print(f"Shard {share.index} of {share.of} of group {shard['group']}: owns {share.describe()}", flush=True)
    split = decode_split(shard["split"])
    record = {
        "group": shard["group"],
        "share": share.to_dict(),
        "config": values,
        "split": digest(split),
        "done": {},
    }
    write_text(working / SHARD_FILE, json.dumps(record, indent=2) + "\n")
    found = flow.index(config)
    split_path = layout.competition_dir(config) / shard["split_name"]  # the group's split, not a new one
    write_atomically(split_path, lambda path: path.write_bytes(split))
    record["test_ids"] = digest("\n".join(found.test["id"].astype(str)).encode())
    if config.kernel.task == "train":
        run = flow.train(config, report_after=False, share=share)
        flow.predict_members(config)
        record["done"] = {
            "folds": [k for k in share.folds if run.fold(k).is_finished],
            "refits": [k for k in share.refits if run.refit(k).is_finished],
        }
    else:
        timeout = min(config.tune.timeout or config.train.time_budget, config.train.time_budget)
        limits = {"tune.trials": share.trials, "tune.timeout": timeout}
        flow.tune(validate(apply_settings(config, limits, "shard's share")), worker_index=share.worker)
        record["done"] = {"trials": len(worker_trials(load_study(config, share.worker), share.worker))}
    write_text(working / SHARD_FILE, json.dumps(record, indent=2) + "\n")
    print(f"Shard {share.index} of {share.of} finished: {json.dumps(record['done'])}", flush=True)
    return record
