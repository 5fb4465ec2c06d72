"""TensorBoard event files beside ``metrics.jsonl``, written when tensorboardX is installed.

``pip install "jaxrnn[tensorboard]"`` installs tensorboardX, a light writer of the
event format (no TensorFlow). Without it nothing is written and nothing changes.
"""

from __future__ import annotations

import json
import os
import pathlib
import uuid
from typing import Any


def event_writer(workdir, *, first_step: int, config: dict[str, Any] | None):
    """An :class:`EventWriter` for ``workdir``, or ``None`` without tensorboardX.

    ``first_step`` is the step the run starts from (its checkpoint's): what an earlier
    run wrote past it (steps this run records again) is purged, so TensorBoard shows
    each step once. A run from step 0 writes ``config`` as hyperparameters.
    """
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        return None
    return EventWriter(SummaryWriter, pathlib.Path(workdir), first_step, config)


class EventWriter:
    """The scalars of every ``metrics.jsonl`` record, the config, and evaluation texts.

    Tags are ``<split>/<name>`` (``train/loss``, ``eval/val_bpc``), at the record's step.
    """

    def __init__(self, summary_writer, workdir: pathlib.Path, first_step: int, config):
        # purge_step: TensorBoard hides events at this step and later from the files
        # written before, so a run resumed from a checkpoint records each step once.
        earlier = any(workdir.glob("events.out.tfevents.*"))
        purge_step = first_step + 1 if earlier else None
        # The writer names its file by the second and the host: a run resumed within the
        # same second would open the earlier run's file anew and lose what it held.
        suffix = f".{os.getpid()}.{uuid.uuid4().hex[:8]}"
        self.writer = summary_writer(
            str(workdir), purge_step=purge_step, flush_secs=10, filename_suffix=suffix
        )
        if first_step == 0 and config is not None:
            from tensorboardX.summary import hparams

            for summary in hparams(_hparams(config), {}):
                self.writer.file_writer.add_summary(summary)
            text = "```json\n" + json.dumps(config, indent=2, sort_keys=True) + "\n```"
            self.writer.add_text("config", text, 0)

    def scalars(self, step: int, split: str, values: dict[str, float]) -> None:
        for name, value in values.items():
            self.writer.add_scalar(f"{split}/{name}", value, step)

    def text(self, step: int, tag: str, text: str) -> None:
        # Markdown: indented lines keep a sample's line breaks and spaces as written.
        self.writer.add_text(tag, "\n".join("    " + line for line in text.splitlines()), step)

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def _hparams(config: dict[str, Any]) -> dict[str, Any]:
    """A config as TensorBoard hyperparameters: numbers, strings and booleans as they are,
    anything else (``None``, a mapping, a list) as its JSON text; nested keys dotted."""
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            flat.update({f"{key}.{k}": v for k, v in _hparams(value).items()})
        elif isinstance(value, (bool, int, float, str)):
            flat[key] = value
        else:
            flat[key] = json.dumps(value)
    return flat
