"""The README's first-submission commands: each one a command and flags the CLI takes."""

from __future__ import annotations

import shlex

from benchmarks.first_submission import readme_block
from pipeline.cli import build_parser

MAKE_TARGETS = {"setup", "download", "train", "predict", "submit", "leaderboard", "report"}


def test_every_command_of_the_offline_first_submission_parses() -> None:
    parser = build_parser()
    commands = 0
    for line in readme_block().splitlines():
        words = shlex.split(line, comments=True)
        if not words:
            continue
        if words[0] == "make":
            target, *settings = words[1:]
            assert target in MAKE_TARGETS, line
            arguments = [s.split("=", 1)[1] for s in settings if s.startswith("ARGS=")]
            if target != "setup":
                parser.parse_args([target, *shlex.split(" ".join(arguments))])
                commands += 1
        elif words[-1:] == ["&"] or "pipeline" in words:
            at = words.index("pipeline") + 1
            parser.parse_args([w for w in words[at:] if w != "&"])
            commands += 1
    assert commands >= 6
