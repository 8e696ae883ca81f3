"""The examples call the pipeline's public steps and settings that exist."""

from __future__ import annotations

import ast
from pathlib import Path

from pipeline import flow

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_every_step_an_example_calls_is_public_in_flow() -> None:
    for example in sorted(EXAMPLES.glob("*.py")):
        tree = ast.parse(example.read_text())
        steps = {
            node.func.attr
            for node in ast.walk(tree)
            if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "flow"
        }
        assert steps, example
        assert all(callable(getattr(flow, step, None)) and not step.startswith("_") for step in steps), (
            example,
            steps,
        )
