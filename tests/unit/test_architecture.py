"""The package's shape: imports flow one way, down the layers, with no circle and no heavy
library at the top of the modules that every command imports."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pipeline

PACKAGE = Path(pipeline.__file__).parent
LAYERS = pipeline.LAYERS  # declared once, beside the package it describes


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every pipeline module `path` imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pipeline"):
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                is_module = (PACKAGE.parent / Path(*candidate.split("."))).with_suffix(".py").is_file()
                found.add(candidate if is_module else node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("pipeline"))
    return found - {"pipeline"}


def layer_of(module: str) -> int:
    best, depth = -1, -1
    for index, names in enumerate(LAYERS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and len(name) > depth:
                best, depth = index, len(name)
    assert best >= 0, f"{module} has no layer: add it to LAYERS"
    return best


GRAPH = {module_name(p): imports_of(p) for p in PACKAGE.rglob("*.py")}


def test_no_module_imports_a_higher_layer() -> None:
    upward = [
        f"{module} (layer {layer_of(module)}) imports {target} (layer {layer_of(target)})"
        for module, targets in GRAPH.items()
        for target in targets
        if layer_of(target) > layer_of(module)
    ]
    assert upward == []


def test_no_import_circle() -> None:
    state: dict[str, str] = {}
    circles: list[list[str]] = []

    def visit(module: str, trail: list[str]) -> None:
        state[module] = "open"
        for target in sorted(GRAPH.get(module, ())):
            if state.get(target) == "open":
                circles.append([*trail[trail.index(target) :], target])
            elif target not in state:
                visit(target, [*trail, target])
        state[module] = "done"

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])
    assert circles == []


def test_light_modules_import_no_heavy_library() -> None:
    probe = (
        "import sys\n"
        "import pipeline.cli, pipeline.flow, pipeline.run, pipeline.layout, pipeline.submit.upload\n"
        "print(sorted({'tensorflow', 'keras', 'kaggle', 'jax'} & set(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "[]", done.stderr[-2000:]


def test_tensorflow_start_up_chatter_is_dropped_and_real_errors_pass() -> None:
    from pipeline.native_logs import is_chatter

    banner = b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
    info = b"I0000 00:00:1796290143.481355   11202 port.cc:153] oneDNN custom operations are on.\n"
    cuinit = b"E0000 00:00:1796290143.5   11202 cuda_executor.cc:1228] failed call to cuInit: UNKNOWN ERROR (303)\n"
    assert is_chatter(banner, gpu=False) and is_chatter(info, gpu=True)
    assert is_chatter(cuinit, gpu=False) and not is_chatter(cuinit, gpu=True)  # a real GPU problem shows
    assert not is_chatter(b"Traceback (most recent call last):\n", gpu=False)


def test_loading_tensorflow_prints_nothing() -> None:
    probe = "from pipeline.native_logs import load_tensorflow\nload_tensorflow()\nimport keras\n"
    env = {k: v for k, v in __import__("os").environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0 and done.stdout == "" and done.stderr == "", done.stderr[-2000:]
