"""``metrics.jsonl``: one JSON object per line, appended as training goes."""

from __future__ import annotations

import json
import math
import os
import pathlib
from collections.abc import Iterator
from typing import Any


class MetricsLog:
    """Appends records ``{"step": int, "split": str, name: float, ...}`` to a JSON-lines file.

    Each record is one line, written and flushed at once, so a crash loses at
    most the line being written and the file stays readable by :func:`read_metrics`.

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "metrics.jsonl"
        >>> log = MetricsLog(path)
        >>> _ = log.write(10, "train", loss=2.5)
        >>> _ = log.write(10, "eval", loss=2.7)
        >>> [r["loss"] for r in read_metrics(path, split="eval")]
        [2.7]
    """

    def __init__(self, path):
        self.path = pathlib.Path(path)

    def write(self, step: int, split: str, **values: Any) -> dict[str, Any]:
        record = {"step": int(step), "split": split}
        record.update({k: _plain(v) for k, v in values.items()})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        return record

    def truncate_after(self, step: int) -> None:
        """Drops records past ``step`` (left by a run that died after its last checkpoint).

        The file is rewritten to a temporary file and renamed over the old one,
        so it is never left half-written.
        """
        if not self.path.exists():
            return
        kept = [r for r in read_metrics(self.path) if r.get("step", 0) <= step]
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in kept)
        os.replace(tmp, self.path)


def read_metrics(path, *, split: str | None = None) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` file (optionally of one ``split``), skipping a
    torn last line."""
    return list(_records(pathlib.Path(path), split))


def _records(path: pathlib.Path, split) -> Iterator[dict[str, Any]]:
    if not path.exists():
        return
    with open(path) as f:
        for line in f:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and (split is None or record.get("split") == split):
                yield record


def _plain(value):
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no nan/inf
    return value
