"""The progress display of a run: a Rich bar on a terminal, plain log lines otherwise."""

from __future__ import annotations


def progress(console, title: str, total: int, start: int) -> _Bar:
    """A context manager showing steps ``start .. total``; see :class:`_Bar`."""
    return _Bar(console, title, total, start)


def format_value(value: float) -> str:
    """A metric value in at most 4 significant digits."""
    return f"{value:.4g}" if abs(value) < 1e4 else f"{value:.3e}"


class _Bar:
    """A Rich progress bar on a terminal; plain log lines otherwise (CI, pipes)."""

    def __init__(self, console, title, total, start):
        self.console = console
        self.progress = None
        self.total = total
        if console.is_terminal:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]}"),
                TextColumn("{task.fields[rate]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=console,
            )
            self.task = self.progress.add_task(
                title, total=total, completed=start, loss="-", rate=""
            )

    def advance(self, step):
        if self.progress is not None:
            self.progress.update(self.task, completed=step)

    def log(self, step, means, rate, item_name, devices=1):
        loss = means.get("loss", float("nan"))
        rate_text = f"{rate:,.0f} {item_name}/s on {devices} device{'s' if devices != 1 else ''}"
        if self.progress is not None:
            self.progress.update(self.task, loss=format_value(loss), rate=rate_text)
        else:
            extra = "  ".join(f"{k} {format_value(v)}" for k, v in means.items() if k != "loss")
            line = f"step {step}/{self.total}  loss {format_value(loss)}  {extra}  {rate_text}"
            self.console.print(line.replace("    ", "  "))

    def __enter__(self):
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc):
        if self.progress is not None:
            self.progress.stop()
