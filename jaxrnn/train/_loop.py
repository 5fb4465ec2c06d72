"""The training loop every example shares: resume, progress, metrics, checkpoints, Ctrl-C."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pathlib
import signal
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import jax

from jaxrnn.train._checkpoint import Checkpoints
from jaxrnn.train._config import ConfigError, to_dict
from jaxrnn.train._metrics import MetricsLog
from jaxrnn.train._plots import plot_metrics

#: Config keys that may change between an interrupted run and its resumption.
RESUMABLE_KEYS = ("steps", "log_every", "eval_every", "checkpoint_every")


@dataclasses.dataclass
class RunResult:
    """What :func:`fit` returns.

    Attributes:
        state: the training state after the last completed step.
        step: the number of completed steps.
        interrupted: whether the run stopped early on Ctrl-C (its state is saved).
        resumed_from: the checkpoint step the run started from, or ``None``.
        workdir: the run's work directory.
    """

    state: Any
    step: int
    interrupted: bool
    resumed_from: int | None
    workdir: pathlib.Path


def schedule(config) -> dict[str, int | None]:
    """:func:`fit`'s step counts read from a config with the usual names.

    ``steps``, ``checkpoint_every``, ``log_every`` and ``eval_every`` become
    ``num_steps``, ``checkpoint_every``, ``log_every`` and ``eval_every``, so an
    example calls ``fit(workdir, ..., config=config, **schedule(config))``.
    """
    return {
        "num_steps": config.steps,
        "checkpoint_every": config.checkpoint_every,
        "log_every": config.log_every,
        "eval_every": config.eval_every,
    }


def fit(
    workdir,
    *,
    init_state,
    train_step: Callable[[Any, int], tuple[Any, Mapping[str, Any]]],
    num_steps: int,
    config=None,
    checkpoint_every: int = 500,
    log_every: int = 50,
    eval_fn: Callable[[Any], Mapping[str, float]] | None = None,
    eval_every: int | None = None,
    items_per_step: int = 1,
    item_name: str = "steps",
    resumable_keys: Sequence[str] = RESUMABLE_KEYS,
    meta: Mapping[str, Any] | None = None,
    callbacks: Iterable[Callable[[int, Any, Mapping[str, Any]], None]] = (),
    console=None,
    description: str = "train",
) -> RunResult:
    """Runs ``train_step`` until ``num_steps``, resumably.

    In ``workdir`` the run keeps ``checkpoints/<step>/`` (Orbax, atomic, every
    ``checkpoint_every`` steps, at the end and on Ctrl-C), ``metrics.jsonl``
    (training metrics averaged over each ``log_every`` steps, and ``eval_fn``'s
    results every ``eval_every`` steps and at the end), ``config.json`` and
    ``curves.png``.

    If ``workdir`` already holds a checkpoint, the run resumes from the newest
    one. Resumption is exact when ``train_step`` is a pure function of its
    arguments: draw each step's batch and randomness from the step number (for
    example ``jax.random.fold_in(key, step)``), and keep everything else that
    changes (parameters, optimizer state, carried hidden states) in ``state``.
    Then an interrupted and resumed run ends with the same state as one that
    never stopped.

    Ctrl-C (SIGINT) lets the current step finish, saves a checkpoint and returns
    with ``interrupted=True``; a second Ctrl-C aborts at once (the last saved
    checkpoint is still intact, since Orbax commits a checkpoint only when it is
    complete).

    Args:
        workdir: the run's directory (created if needed).
        init_state: the freshly initialised state, any pytree of arrays; also
            the template that a checkpoint is restored into.
        train_step: ``train_step(state, step) -> (state, metrics)``, usually
            jitted, where ``step`` counts from 0 and ``metrics`` is a dict of
            scalars (it should contain ``"loss"``).
        num_steps: total number of steps of the run (including resumed ones).
        config: the run's config dataclass, saved to ``config.json`` and with
            every checkpoint. On resumption a config that differs in a key not
            in ``resumable_keys`` is an error: the checkpoint belongs to
            another experiment.
        checkpoint_every: steps between checkpoints.
        log_every: steps between metrics records and progress updates.
        eval_fn: ``eval_fn(state) -> dict`` of floats, e.g. a validation loss.
        eval_every: steps between evaluations (``None``: only at the end).
        items_per_step: how many ``item_name`` one step processes, for the
            throughput shown (e.g. characters).
        item_name: the unit of throughput.
        resumable_keys: config keys allowed to change on resumption.
        meta: extra JSON-ready data stored with every checkpoint.
        callbacks: ``callback(step, state, metrics)`` after every step (with
            ``step`` the number of completed steps and ``metrics`` not yet
            fetched from the device).
        console: a ``rich.console.Console`` (default: a new one on stdout).
        description: label of the progress bar.

    Returns:
        A :class:`RunResult`.

    Raises:
        ConfigError: the work directory's checkpoint was made with another config.
        CheckpointError: the newest checkpoint is unreadable or does not fit
            ``init_state``. Nothing in ``workdir`` is changed in either case.
    """
    for name, value in (
        ("num_steps", num_steps),
        ("checkpoint_every", checkpoint_every),
        ("log_every", log_every),
    ):
        if not isinstance(value, int) or value < (0 if name == "num_steps" else 1):
            raise ValueError(f"{name}: expected a positive int, got {value!r}")
    from rich.console import Console

    console = console or Console()
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    checkpoints = Checkpoints(workdir / "checkpoints")
    metrics = MetricsLog(workdir / "metrics.jsonl")
    config_dict = None if config is None else to_dict(config)

    resumed_from = checkpoints.latest_step()
    state, step = init_state, 0
    if resumed_from is not None:
        saved_meta = checkpoints.restore_meta(resumed_from)
        _check_same_config(saved_meta.get("config"), config_dict, resumable_keys, workdir)
        state, saved_meta = checkpoints.restore(init_state, resumed_from)
        step = int(saved_meta.get("step", resumed_from))
        console.print(f"Resuming from the checkpoint at step {step} in {workdir}")
    metrics.truncate_after(step)
    if config_dict is not None:
        _write_json(workdir / "config.json", config_dict)

    full_meta = {"config": config_dict, **dict(meta or {})}

    def save(at):
        if at not in checkpoints.all_steps():
            checkpoints.save(at, state, {**full_meta, "step": at})

    def evaluate(at):
        values = {k: float(v) for k, v in eval_fn(state).items()}
        metrics.write(at, "eval", **values)
        console.print(f"step {at}: eval " + "  ".join(f"{k} {_fmt(v)}" for k, v in values.items()))
        return values

    interrupted = False
    if step >= num_steps:
        console.print(f"Already trained for {step} steps (steps={num_steps}); nothing to do.")
    else:
        with _progress(console, description, num_steps, step) as bar, _sigint() as stop:
            acc, count, tick = None, 0, time.perf_counter()
            try:
                while step < num_steps and not stop.requested:
                    state, step_metrics = train_step(state, step)
                    step += 1
                    acc = step_metrics if acc is None else jax.tree.map(_add, acc, step_metrics)
                    count += 1
                    for callback in callbacks:
                        callback(step, state, step_metrics)
                    if step % log_every == 0 or step == num_steps:
                        means = {k: float(v) / count for k, v in jax.device_get(acc).items()}
                        now = time.perf_counter()
                        rate = count * items_per_step / max(now - tick, 1e-9)
                        metrics.write(step, "train", **means, items_per_s=rate)
                        bar.log(step, means, rate, item_name)
                        acc, count, tick = None, 0, now
                    bar.advance(step)
                    if step % checkpoint_every == 0:
                        save(step)
                    if eval_fn is not None and eval_every and step % eval_every == 0:
                        if step < num_steps:
                            evaluate(step)
            except KeyboardInterrupt:
                stop.requested = True
            if count:  # the partial interval before an interruption is kept too
                means = {k: float(v) / count for k, v in jax.device_get(acc).items()}
                rate = count * items_per_step / max(time.perf_counter() - tick, 1e-9)
                metrics.write(step, "train", **means, items_per_s=rate)
            interrupted = stop.requested and step < num_steps
        save(step)
        if interrupted:
            console.print(
                f"Interrupted: saved a checkpoint at step {step} in {workdir}. "
                "Run the same command again to resume."
            )
    if not interrupted and eval_fn is not None:
        last = [r for r in _eval_steps(workdir) if r == step]
        if not last:
            evaluate(step)
    try:
        plot_metrics(workdir / "metrics.jsonl", workdir / "curves.png", title=description)
    except ImportError as error:
        console.print(f"No plots: {error}")
    checkpoints.close()
    return RunResult(state, step, interrupted, resumed_from, workdir)


def _add(a, b):
    return a + b


def _fmt(value: float) -> str:
    return f"{value:.4g}" if abs(value) < 1e4 else f"{value:.3e}"


def _eval_steps(workdir):
    from jaxrnn.train._metrics import read_metrics

    return [r["step"] for r in read_metrics(workdir / "metrics.jsonl", split="eval")]


def _write_json(path: pathlib.Path, data) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def _check_same_config(saved, current, resumable_keys, workdir):
    if saved is None or current is None:
        return
    changed = sorted(
        k
        for k in set(saved) | set(current)
        if k not in resumable_keys and saved.get(k, "<absent>") != current.get(k, "<absent>")
    )
    if changed:
        details = ", ".join(
            f"{k}: checkpoint {saved.get(k, '<absent>')!r}, now {current.get(k, '<absent>')!r}"
            for k in changed
        )
        raise ConfigError(
            f"{changed[0]}: the checkpoint in {str(workdir)!r} was trained with another config "
            f"({details}). Nothing was changed; use the same values to resume it, or a new "
            "work directory for a new run."
        )


class _Stop:
    requested = False


@contextlib.contextmanager
def _sigint():
    """The first Ctrl-C only sets ``requested``; a second one raises KeyboardInterrupt."""
    stop = _Stop()
    if threading.current_thread() is not threading.main_thread():
        yield stop  # signal handlers live in the main thread; Ctrl-C raises there instead
        return

    def handler(signum, frame):
        if stop.requested:
            raise KeyboardInterrupt
        stop.requested = True

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


class _Bar:
    """A Rich progress bar on a terminal; plain log lines otherwise (CI, pipes)."""

    def __init__(self, console, description, total, start):
        self.console = console
        self.live = console.is_terminal
        self.progress = None
        if self.live:
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
                description, total=total, completed=start, loss="-", rate=""
            )
        self.total = total

    def advance(self, step):
        if self.progress is not None:
            self.progress.update(self.task, completed=step)

    def log(self, step, means, rate, item_name):
        loss = means.get("loss", float("nan"))
        rate_text = f"{rate:,.0f} {item_name}/s"
        if self.progress is not None:
            self.progress.update(self.task, loss=_fmt(loss), rate=rate_text)
        else:
            extra = "  ".join(f"{k} {_fmt(v)}" for k, v in means.items() if k != "loss")
            self.console.print(
                f"step {step}/{self.total}  loss {_fmt(loss)}  {extra}  {rate_text}".replace(
                    "    ", "  "
                )
            )

    def __enter__(self):
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc):
        if self.progress is not None:
            self.progress.stop()


def _progress(console, description, total, start):
    return _Bar(console, description, total, start)
