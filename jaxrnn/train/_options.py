""":func:`jaxrnn.train.fit`'s grouped options: when things happen, and how the run is shown."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Annotated, Any

from jaxrnn.train._config import Range, check_config
from jaxrnn.train._plots import Panel


@dataclasses.dataclass(frozen=True)
class Schedule:
    """When a run trains, records, evaluates and saves, in steps.

    The field names are the config keys of the same meaning, so
    ``Schedule.from_config(config)`` reads them from a run's config, and errors
    name the key. These are also the keys that may change when a run resumes
    (to train longer, say).

    Attributes:
        steps: total number of training steps (including resumed ones).
        log_every: steps between training-metrics records (means over the
            interval) and progress updates.
        eval_every: steps between evaluations; ``None``: only at the end.
        checkpoint_every: steps between checkpoints (there is one at the end too).
        profile_steps: training steps to trace with the JAX profiler, from the
            second step a run takes (the first compiles), into ``<workdir>/profile``
            (TensorBoard's profile tab or Perfetto read it); 0, the default: none.

    Example:
        >>> Schedule(steps=100, log_every=10).checkpoint_every
        500
        >>> try:
        ...     Schedule(steps=-1)
        ... except ValueError as error:
        ...     print(error)
        steps: expected an int >= 0, got -1
    """

    steps: Annotated[int, Range(ge=0)]
    log_every: Annotated[int, Range(ge=1)] = 50
    eval_every: Annotated[int, Range(ge=1)] | None = None
    checkpoint_every: Annotated[int, Range(ge=1)] = 500
    profile_steps: Annotated[int, Range(ge=0)] = 0

    def __post_init__(self):
        check_config(self)

    @classmethod
    def from_config(cls, config) -> Schedule:
        """The schedule of a config with fields ``steps``, ``log_every``, ``eval_every``,
        ``checkpoint_every`` and ``profile_steps`` (those it lacks keep their defaults)."""
        names = [f.name for f in dataclasses.fields(cls)]
        if not hasattr(config, "steps"):
            raise TypeError(f"config: expected a config with a 'steps' field, got {config!r}")
        return cls(**{name: getattr(config, name) for name in names if hasattr(config, name)})


@dataclasses.dataclass(frozen=True)
class Report:
    """How :func:`jaxrnn.train.fit` shows a run.

    Attributes:
        title: the progress bar's label and the title of ``curves.png``.
        items_per_step: how many ``item_name`` one step processes, for the
            throughput shown (e.g. characters).
        item_name: the unit of throughput.
        panels: the axes of ``curves.png``, as :class:`Panel` s (which curves
            share an axis, and reference lines); ``None``: one per metric.
        console: a ``rich.console.Console`` (default: a new one on stdout).
    """

    title: str = "train"
    items_per_step: Annotated[int, Range(ge=1)] = 1
    item_name: str = "steps"
    panels: Sequence[Panel] | None = None
    console: Any = None

    def __post_init__(self):
        check_config(self)
        if self.panels is not None:
            object.__setattr__(self, "panels", tuple(self.panels))
            for panel in self.panels:
                if not isinstance(panel, Panel):
                    raise TypeError(f"panels: expected Panel values, got {panel!r}")
