"""``metrics.jsonl``: one JSON object per line, appended as training goes."""

from __future__ import annotations

import json
import math
import os
import pathlib
from typing import Any

from jaxrnn.train._errors import WorkdirError, one_line
from jaxrnn.train._workdir import writing


class MetricsLog:
    """Appends records ``{"step": int, "split": str, name: float, ...}`` to a JSON-lines file.

    Each record is one line, written at once, so a crash loses at most the line
    being written: a last line without its newline is a torn write, which
    :func:`read_metrics` skips and :meth:`truncate_after` removes.

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
        """Appends one record and returns it."""
        record = {"step": int(step), "split": split}
        record.update({k: _plain(v) for k, v in values.items()})
        with writing(self.path), open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        return record

    def truncate_after(self, step: int) -> list[dict[str, Any]]:
        """Drops records past ``step`` (left by a run that died after its last checkpoint)
        and a torn last line; returns the records kept.

        The file is rewritten only if something is dropped, to a temporary file
        renamed over the old one, so it is never left half-written.

        Raises:
            WorkdirError: a line other than the last is not a metrics record;
                the file is left as it is.
        """
        records, torn = _parse(self.path)
        kept = [r for r in records if r["step"] <= step]
        if len(kept) < len(records) or torn:
            tmp = self.path.with_name(self.path.name + ".tmp")
            with writing(tmp), open(tmp, "w") as f:
                f.writelines(json.dumps(r) + "\n" for r in kept)
            os.replace(tmp, self.path)
        return kept


def read_metrics(path, *, split: str | None = None) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` file (optionally of one ``split``).

    A torn last line (a write cut short by a crash) is skipped; a missing file
    has no records.

    Raises:
        WorkdirError: a complete line is not a record (not JSON, or without an
            int ``step`` and a str ``split``); the message names the line.
    """
    records, _ = _parse(pathlib.Path(path))
    return [r for r in records if split is None or r["split"] == split]


def _parse(path: pathlib.Path) -> tuple[list[dict[str, Any]], bool]:
    """``(records, torn)``: the file's records and whether its last line is torn."""
    if not path.exists():
        return [], False
    try:
        lines = path.read_bytes().split(b"\n")
    except OSError as error:
        raise WorkdirError(f"{str(path)!r} cannot be read ({error.strerror})") from None
    tail = lines.pop()  # b"" when the file ends with a newline
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        record = _record(line)
        if isinstance(record, str):
            raise WorkdirError(
                f"{str(path)!r} line {number} is damaged ({record}): "
                f"{one_line(line.decode('utf-8', 'replace'), 80)!r}. Nothing was changed: "
                "repair or delete that line, or use a new work directory."
            )
        records.append(record)
    return records, bool(tail)


def _record(line: bytes) -> dict[str, Any] | str:
    """The record on ``line``, or a string saying why it is not one."""
    try:
        record = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return "not JSON"
    if not isinstance(record, dict):
        return f"expected a JSON object, got {type(record).__name__}"
    step, split = record.get("step"), record.get("split")
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        return f"step: expected an int >= 0, got {step!r}"
    if not isinstance(split, str):
        return f"split: expected a str, got {split!r}"
    return record


def _plain(value):
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no nan/inf
    return value
