"""PNG plots with matplotlib's Agg canvas (no display, no global pyplot state)."""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Mapping, Sequence

from jaxrnn.train._metrics import read_metrics
from jaxrnn.train._workdir import writing

#: Record fields that are bookkeeping, not curves.
_NOT_CURVES = ("step", "split", "time", "steps_per_s", "items_per_s", "devices")


@dataclasses.dataclass(frozen=True)
class Panel:
    """One axis of ``curves.png``: the curves that share it and its reference lines.

    Attributes:
        title: the axis title.
        curves: ``"split/metric"`` names, e.g. ``("train/bpc", "eval/val_bpc")``:
            the ``metric`` of the records of that ``split`` against the step.
            Put curves on one panel when they share a unit.
        lines: ``{label: value}`` horizontal reference lines; a value is a
            number, or a ``"split/metric"`` name whose last recorded value is
            used (e.g. a baseline the evaluation reports).
        ylabel: the y-axis label (default: none).
        log_y: a logarithmic y axis.

    Example:
        >>> Panel("bits per character", ("train/bpc", "eval/val_bpc"),
        ...       lines={"unigram": "eval/unigram_bpc"}).curves
        ('train/bpc', 'eval/val_bpc')
    """

    title: str
    curves: Sequence[str]
    lines: Mapping[str, float | str] = dataclasses.field(default_factory=dict)
    ylabel: str | None = None
    log_y: bool = False

    def __post_init__(self):
        object.__setattr__(self, "curves", tuple(self.curves))
        for name in self.curves:
            _split_metric(name, "curves")
        for label, value in self.lines.items():
            if isinstance(value, str):
                _split_metric(value, f"lines[{label!r}]")
            elif not isinstance(value, int | float) or isinstance(value, bool):
                raise TypeError(
                    f"lines[{label!r}]: expected a number or 'split/metric', got {value!r}"
                )


def _split_metric(name, where) -> tuple[str, str]:
    split, sep, metric = name.partition("/") if isinstance(name, str) else ("", "", "")
    if not (sep and split and metric):
        raise ValueError(f"{where}: expected 'split/metric' (e.g. 'train/loss'), got {name!r}")
    return split, metric


def figure(nrows: int = 1, ncols: int = 1, *, size=(6.4, 4.0)):
    """A matplotlib ``(Figure, axes)`` that renders off-screen; ``axes`` is squeezed as in
    ``plt.subplots``. Save it with :func:`save_figure`."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError(
            'plots need matplotlib: pip install "jaxrnn[examples]" (or pip install matplotlib)'
        ) from None
    fig = Figure(figsize=(size[0] * ncols, size[1] * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=True)
    return fig, axes


def save_figure(fig, path) -> pathlib.Path:
    """Writes ``fig`` as a PNG: to a temporary file first, then renamed over ``path``."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.png")
    with writing(tmp):
        fig.savefig(tmp, dpi=110)
    os.replace(tmp, path)
    return path


def plot_metrics(
    metrics_path, out_path, *, panels: Sequence[Panel] | None = None, title: str | None = None
) -> pathlib.Path | None:
    """Draws ``curves.png`` from a ``metrics.jsonl``: one axis per :class:`Panel`.

    Without ``panels``, one panel per metric with one curve per split. Returns
    the PNG's path, or ``None`` if there is nothing to plot yet.
    """
    records = read_metrics(metrics_path)
    panels = default_panels(records) if panels is None else list(panels)
    if not records or not panels:
        return None
    cols = min(len(panels), 2)
    rows = -(-len(panels) // cols)
    fig, axes = figure(rows, cols, size=(5.2, 3.6))
    flat = list(axes.flat) if hasattr(axes, "flat") else [axes]
    for ax, panel in zip(flat, panels, strict=False):
        _draw(ax, panel, records)
    for ax in flat[len(panels) :]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title)
    return save_figure(fig, out_path)


def default_panels(records) -> list[Panel]:
    """One panel per metric, with that metric of every split on it."""
    names: dict[str, list[str]] = {}
    for r in records:
        for k, v in r.items():
            if k not in _NOT_CURVES and isinstance(v, int | float) and not isinstance(v, bool):
                splits = names.setdefault(k, [])
                if r["split"] not in splits:
                    splits.append(r["split"])
    return [Panel(name, [f"{s}/{name}" for s in splits]) for name, splits in names.items()]


def _points(records, name):
    split, metric = _split_metric(name, "curves")
    return [
        (r["step"], r[metric])
        for r in records
        if r["split"] == split and isinstance(r.get(metric), int | float)
    ]


def _draw(ax, panel: Panel, records) -> None:
    for name in panel.curves:
        points = _points(records, name)
        if points:
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, label=name, marker="o" if len(xs) < 30 else None, ms=3)
    for label, value in panel.lines.items():
        if isinstance(value, str):
            points = _points(records, value)
            if not points:
                continue
            value = points[-1][1]
        ax.axhline(value, color="k", ls="--", lw=1, label=f"{label} ({value:.4g})")
    ax.set(xlabel="step", title=panel.title)
    if panel.ylabel:
        ax.set_ylabel(panel.ylabel)
    if panel.log_y:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
