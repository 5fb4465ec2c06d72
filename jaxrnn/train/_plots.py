"""PNG plots with matplotlib's Agg canvas (no display, no global pyplot state)."""

from __future__ import annotations

import os
import pathlib

from jaxrnn.train._metrics import read_metrics


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
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, path)
    return path


def plot_metrics(metrics_path, out_path, *, title: str | None = None) -> pathlib.Path | None:
    """Training curves from a ``metrics.jsonl``: one panel per metric, one line per split.

    Returns the PNG's path, or ``None`` if there is nothing to plot yet.
    """
    records = read_metrics(metrics_path)
    skip = {"step", "split", "time", "steps_per_s", "items_per_s"}
    names = []
    for r in records:
        for k, v in r.items():
            if k not in skip and k not in names and isinstance(v, int | float):
                names.append(k)
    if not names:
        return None
    cols = min(len(names), 3)
    rows = -(-len(names) // cols)
    fig, axes = figure(rows, cols, size=(4.8, 3.4))
    flat = list(axes.flat) if hasattr(axes, "flat") else [axes]
    for ax, name in zip(flat, names, strict=False):
        for split in dict.fromkeys(r["split"] for r in records):
            points = [
                (r["step"], r[name])
                for r in records
                if r["split"] == split and isinstance(r.get(name), int | float)
            ]
            if points:
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, label=split, marker="o" if len(xs) < 30 else None, ms=3)
        ax.set_xlabel("step")
        ax.set_title(name)
        ax.grid(alpha=0.3)
        ax.legend()
    for ax in flat[len(names) :]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title)
    return save_figure(fig, out_path)
