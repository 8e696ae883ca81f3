"""The ledger under commands running at once: no row lost, the file always whole."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pipeline.submit.ledger import read_ledger, record

WRITER = """
import sys
from pathlib import Path
from pipeline.submit.ledger import record
for i in range(10):
    record(Path(sys.argv[1]), {"competition": "c", "file": f"{sys.argv[2]}-{i}.csv", "status": "submitted"})
"""


def test_four_processes_recording_at_once_lose_no_row(tmp_path: Path) -> None:
    ledger = tmp_path / "submissions" / "ledger.csv"
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(ledger), f"p{n}"]) for n in range(4)]
    assert [w.wait(timeout=120) for w in writers] == [0, 0, 0, 0]
    files = read_ledger(ledger)["file"].tolist()
    assert sorted(files) == sorted(f"p{n}-{i}.csv" for n in range(4) for i in range(10))
    assert not [p for p in ledger.parent.iterdir() if "partial" in p.name]


def test_a_ledger_of_an_older_version_gains_the_new_columns(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.csv"
    ledger.write_text("time,competition,file,run,cv_score,status,ref,public_score,private_score,note\n")
    record(ledger, {"competition": "c", "file": "a.csv", "sha256": "ab12"})
    assert read_ledger(ledger)["sha256"].tolist() == ["ab12"]
