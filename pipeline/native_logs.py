"""TensorFlow loaded without its C++ start-up lines.

TensorFlow 2.20+ logs through absl before `absl::InitializeLog()`, which TF_CPP_MIN_LOG_LEVEL does
not reach: a bare import writes the absl banner, oneDNN and CUDA-stub INFO lines, and on a machine
without a GPU (but with a CUDA build) an `E0000 ... failed call to cuInit` error. `load_tensorflow`
imports TensorFlow and probes its devices with the process's stderr (file descriptor 2) passed
through a filter that drops absl INFO and WARNING lines, and the CUDA probe's errors only where
there is no NVIDIA device; everything else (a real GPU problem, a Python traceback) passes.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

ABSL_CHATTER = re.compile(
    rb"^(?:[IW]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ [\w.]+:\d+\]|WARNING: All log messages before absl::InitializeLog\(\))"
)
CUDA_PROBE = re.compile(rb"^E\d{4} .*(?:cuInit|cuda_executor|cuda_diagnostics|cudart_stub)")


def has_nvidia_device() -> bool:
    """True when the machine has an NVIDIA device node (a GPU the CUDA probe should find)."""
    return any(Path("/dev").glob("nvidia[0-9]*"))


def is_chatter(line: bytes, gpu: bool) -> bool:
    """True for a start-up line nobody needs: absl INFO/WARNING, or a failed CUDA probe without a GPU."""
    return bool(ABSL_CHATTER.match(line)) or (not gpu and bool(CUDA_PROBE.match(line)))


@contextlib.contextmanager
def filtered_stderr() -> Iterator[None]:
    """Inside: file descriptor 2 goes through a pipe that leaves out `is_chatter` lines."""
    sys.stderr.flush()
    saved = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    gpu = has_nvidia_device()

    def pump() -> None:
        with os.fdopen(read_end, "rb") as source:
            for line in source:
                if not is_chatter(line, gpu):
                    os.write(saved, line)

    thread = threading.Thread(target=pump, name="stderr-filter", daemon=True)
    thread.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)  # closes the pipe's write end: the pump sees its end and stops
        thread.join(timeout=10)
        os.close(saved)


def load_tensorflow() -> None:
    """Import TensorFlow and probe its devices, once, without the start-up lines."""
    if "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # what older TensorFlow versions still obey
    with filtered_stderr():
        import tensorflow as tf

        tf.config.list_physical_devices()
