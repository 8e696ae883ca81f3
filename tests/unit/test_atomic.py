"""Files written whole, then renamed: even when several writers race on one file."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pipeline.atomic import write_text


def test_writers_racing_on_one_file_never_leave_a_mixed_or_cut_copy(tmp_path: Path) -> None:
    target = tmp_path / "folds-5-seed42.csv"
    contents = [str(i) * 200_000 for i in range(8)]  # large enough for writes to interleave

    def write(text: str) -> None:
        for _ in range(5):
            write_text(target, text)

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(write, contents))
    assert target.read_text() in contents
    assert [p.name for p in tmp_path.iterdir()] == [target.name]  # no temporary file left behind
