"""Shares of a kernel group (`kernel push --shards N`): which folds, refits and trials each shard
owns, the fold split every shard trains on, and the checks that shards belong to one run.

Pure functions and small records: pushing, fetching and merging live in pipeline.kernel.group.
"""

from __future__ import annotations

import base64
import hashlib
import zlib
from dataclasses import asdict, dataclass
from typing import Any

SHARD_FILE = "shard.json"  # written by a shard into /kaggle/working: its share, config and progress
# Settings that may differ between the shards of one group and the runs they leave: the kernels'
# slugs, the paths and weights file and time budget each kernel resolves on its own machine.
IGNORED = ("kernel", "paths", "model.weights", "train.time_budget")


@dataclass(frozen=True)
class Share:
    """The work one shard owns."""

    index: int  # 1..of: the kernel <slug>-<index>
    of: int  # shards pushed in this round
    folds: tuple[int, ...] = ()
    refits: tuple[int, ...] = ()
    trials: int = 0
    worker: int = 0  # the tuning sampler's worker number, new for every shard ever pushed in the group
    refit_epochs: dict[str, int] | None = None  # set when the folds that choose them are gathered already

    @property
    def is_empty(self) -> bool:
        """True when the shard would have nothing to do."""
        return not (self.folds or self.refits or self.trials)

    def describe(self) -> str:
        """What the shard owns, in a few words: 'folds 0, 3 and refit 1', '3 trials'."""
        parts = []
        if self.folds:
            parts.append(f"fold{'s' if len(self.folds) > 1 else ''} {', '.join(map(str, self.folds))}")
        if self.refits:
            parts.append(f"refit{'s' if len(self.refits) > 1 else ''} {', '.join(map(str, self.refits))}")
        if self.trials:
            parts.append(f"{self.trials} trial{'s' if self.trials > 1 else ''}")
        return " and ".join(parts) or "nothing"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "folds": list(self.folds), "refits": list(self.refits)}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Share:
        return cls(
            index=int(values["index"]),
            of=int(values["of"]),
            folds=tuple(int(k) for k in values.get("folds", ())),
            refits=tuple(int(k) for k in values.get("refits", ())),
            trials=int(values.get("trials", 0)),
            worker=int(values.get("worker", 0)),
            refit_epochs=values.get("refit_epochs"),
        )


def plan_shares(
    shards: int,
    folds: list[int],
    refits: list[int],
    trials: int,
    first_worker: int = 0,
    refit_epochs: dict[str, int] | None = None,
) -> list[Share]:
    """Deal the work round robin over `shards` kernels: the folds, then the refits (a full run: fold k
    to shard k mod N), and the trials as evenly as possible; shards left with nothing are dropped."""
    work = [("fold", k) for k in folds] + [("refit", k) for k in refits]
    shares = []
    for i in range(shards):
        mine = work[i::shards]
        shares.append(
            Share(
                index=i + 1,
                of=shards,
                folds=tuple(k for kind, k in mine if kind == "fold"),
                refits=tuple(k for kind, k in mine if kind == "refit"),
                trials=trials // shards + (1 if i < trials % shards else 0),
                worker=first_worker + i,
                refit_epochs=refit_epochs,
            )
        )
    return [share for share in shares if not share.is_empty]


def shard_slug(base: str, index: int) -> str:
    """The kernel slug of shard `index`: <base>-<index> (Kaggle slugs keep 50 characters)."""
    suffix = f"-{index}"
    return base[: 50 - len(suffix)].rstrip("-") + suffix


def encode_split(data: bytes) -> str:
    """A fold split file as text to embed in a kernel's script (deflated, base64)."""
    return base64.b64encode(zlib.compress(data, 9)).decode()


def decode_split(text: str) -> bytes:
    """The fold split file's bytes back from `encode_split`."""
    return zlib.decompress(base64.b64decode(text))


def digest(data: bytes) -> str:
    """A short fingerprint of a file's bytes (the split, the test ids' order)."""
    return hashlib.sha256(data).hexdigest()[:16]


def comparable(values: dict[str, Any]) -> dict[str, Any]:
    """A configuration's settings (dotted names) that must be equal across the shards of one run."""
    flat: dict[str, Any] = {}
    for section, value in values.items():
        if isinstance(value, dict):
            flat.update({f"{section}.{key}": v for key, v in value.items()})
        else:
            flat[section] = value
    return {
        key: value for key, value in flat.items() if key not in IGNORED and key.split(".")[0] not in IGNORED
    }


def differences(ours: dict[str, Any], theirs: dict[str, Any]) -> list[str]:
    """The dotted settings whose values differ between two configurations (IGNORED left out)."""
    a, b = comparable(ours), comparable(theirs)
    return sorted(key for key in a.keys() | b.keys() if a.get(key) != b.get(key))
