"""The training loop every example shares: resume, progress, metrics, checkpoints, Ctrl-C."""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import json
import pathlib
import signal
import statistics
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import jax

from jaxrnn.train._checkpoint import Checkpoints
from jaxrnn.train._config import check_config, to_dict
from jaxrnn.train._errors import ConfigError
from jaxrnn.train._metrics import MetricsLog, read_metrics
from jaxrnn.train._options import Report, Schedule
from jaxrnn.train._parallel import devices_of
from jaxrnn.train._plots import plot_metrics
from jaxrnn.train._progress import format_value, progress
from jaxrnn.train._tensorboard import event_writer
from jaxrnn.train._workdir import disk_error, hold_workdir, is_primary, write_json

#: Keys of the meta stored with a checkpoint that :func:`fit` fills in itself.
_RESERVED_META = ("config", "step")

#: Config keys that may always change on resumption: how many devices a run is
#: split over (a checkpoint restores into ``init_state``'s shardings).
_PARALLEL_KEYS = ("devices",)


@dataclasses.dataclass(frozen=True)
class RunResult:
    """What :func:`fit` returns (and what an example's ``train_and_evaluate`` returns).

    Attributes:
        state: the training state after the last completed step.
        step: the number of completed steps.
        interrupted: whether the run stopped early on Ctrl-C or SIGTERM (its state
            is saved).
        stopped_by: the signal that stopped it, ``"SIGINT"`` or ``"SIGTERM"``
            (``None`` when it was not interrupted).
        workdir: the run's work directory.
        resumed_from: the checkpoint step the run started from, or ``None``.
        evaluation: ``eval_fn``'s results at the last step (empty if it was
            interrupted or has no ``eval_fn``).
        summary: what a script adds about its run (final scores, a sample).
        items_per_s: the training throughput in ``Report.item_name`` per second,
            the median over this run's log intervals (the first, which includes
            the compile, weighs no more than any other); ``None`` if none was logged.
    """

    state: Any
    step: int
    interrupted: bool
    workdir: pathlib.Path
    resumed_from: int | None = None
    evaluation: Mapping[str, float] = dataclasses.field(default_factory=dict)
    summary: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    stopped_by: str | None = None
    items_per_s: float | None = None


def fit(
    workdir,
    *,
    init_state,
    train_step: Callable[[Any, int], tuple[Any, Mapping[str, Any]]],
    schedule: Schedule,
    eval_fn: Callable[[Any], Mapping[str, float]] | None = None,
    config=None,
    resumable: Sequence[str] = (),
    meta: Mapping[str, Any] | None = None,
    callbacks: Iterable[Callable[[int, Any, Mapping[str, Any]], None]] = (),
    report: Report | None = None,
) -> RunResult:
    """Runs ``train_step`` for ``schedule.steps`` steps, resumably.

    In ``workdir`` the run keeps ``checkpoints/<step>/`` (Orbax, atomic, with
    sha256 digests), ``metrics.jsonl`` (training metrics averaged over each
    ``log_every`` steps, cut at checkpoints, and ``eval_fn``'s results),
    ``config.json`` and ``curves.png`` (drawn as ``report.panels`` say). The run
    holds an OS lock on ``workdir``: a second run on it is refused.

    With tensorboardX installed (``pip install "jaxrnn[tensorboard]"``) the run
    also writes TensorBoard event files into ``workdir``: every record of
    ``metrics.jsonl`` as scalars (``train/loss``, ``eval/val_bpc``), the config as
    hyperparameters, and the texts ``eval_fn`` returns (a sample, say); a resumed
    run purges what an earlier one wrote past its checkpoint, so each step shows
    once. ``schedule.profile_steps`` traces that many training steps (after the
    first, which compiles) with the JAX profiler into ``workdir/profile``.

    The run uses the devices that ``init_state`` lives on: for data parallelism,
    replicate it (and shard the batch) with :class:`DataParallel`; each
    training record and progress line says how many devices there are. A
    checkpoint restores into ``init_state``'s shardings whatever the devices it
    was written from, so a run may resume on another device count (the config
    key ``devices`` may change). With several processes
    (``jax.distributed.initialize``), every process calls ``fit``; only process
    0 locks ``workdir`` and writes ``metrics.jsonl``, ``config.json``,
    ``curves.png``, the event files and the trace, and Orbax writes each
    process's share of a checkpoint.

    If ``workdir`` already holds a checkpoint, the run resumes from the newest
    one, after checking its digests. Resumption is exact when ``train_step`` is
    a pure function of its arguments: draw each step's batch and randomness from
    the step number (for example ``jax.random.fold_in(key, step)``), and keep
    everything else that changes (parameters, optimizer state, carried hidden
    states) in ``state``. Then an interrupted and resumed run ends with the same
    state and the same ``metrics.jsonl`` as one that never stopped.

    Each step ends in the same order: the step's training record, its
    evaluation, then its checkpoint. So a checkpoint implies that every record
    up to its step exists, and a process killed at any point (SIGKILL, a full
    disk) resumes from its newest checkpoint with the records after it dropped
    and written again.

    Ctrl-C (SIGINT), and SIGTERM (how cloud machines and schedulers stop a
    job), let the current step finish, record it, save a checkpoint and return
    with ``interrupted=True`` (and ``stopped_by`` naming the signal); a second
    one aborts at once (Orbax commits a checkpoint only when it is complete, so
    the newest one is intact). Either way the same command resumes bit-exact.

    Args:
        workdir: the run's directory (created if needed).
        init_state: the freshly initialised state, any pytree of arrays; also
            the template that a checkpoint is restored into.
        train_step: ``train_step(state, step) -> (state, metrics)``, usually
            jitted, where ``step`` counts from 0 and ``metrics`` is a dict of
            scalars (it should contain ``"loss"``).
        schedule: when to record, evaluate and save, and for how many steps.
        eval_fn: ``eval_fn(state) -> dict`` of floats, e.g. a validation loss
            (or ``eval_fn(state, step)``, if it takes two arguments: to key what it
            writes by step, so a resumed run can replace what it redoes);
            run every ``schedule.eval_every`` steps and at the end. Values that
            are strings (a generated sample) go to TensorBoard as text only.
        config: the run's config dataclass, checked (types and
            :class:`~jaxrnn.train.Range` s) before anything is written, saved
            to ``config.json`` and with every checkpoint. On resumption a config
            that differs in a key other than the schedule's, ``devices`` and
            ``resumable`` is an error: the checkpoint belongs to another experiment.
        resumable: config keys besides the schedule's that may change on
            resumption (a data path whose content ``meta`` identifies, say).
        meta: JSON-ready facts stored with every checkpoint that identify the
            run's data (e.g. ``{"text": "sha256:..."}``); a resumption whose
            ``meta`` differs is refused, like a differing config.
        callbacks: ``callback(step, state, metrics)`` after every step (with
            ``step`` the number of completed steps and ``metrics`` not yet
            fetched from the device), before the step is recorded.
        report: the progress label, throughput unit and plot panels (default:
            ``Report()``).

    Returns:
        A :class:`RunResult`.

    Raises:
        ConfigError: the config is invalid, or the work directory's checkpoint
            was made with another config or ``meta``.
        CheckpointError: the newest checkpoint is unreadable, damaged (its
            digests do not match) or does not fit ``init_state``.
        WorkdirError: another run holds ``workdir``, it cannot be written, the
            disk is full, or ``metrics.jsonl`` has a damaged line. Nothing saved
            is changed by any of these: the checks come before the first write,
            and a failed write leaves the newest checkpoint intact.
    """
    if not isinstance(schedule, Schedule):
        raise TypeError(f"schedule: expected a jaxrnn.train.Schedule, got {schedule!r}")
    report = Report() if report is None else report
    if not isinstance(report, Report):
        raise TypeError(f"report: expected a jaxrnn.train.Report, got {report!r}")
    if config is not None:
        check_config(config)
    meta = _check_meta(meta)
    workdir = pathlib.Path(workdir)
    with hold_workdir(workdir), Checkpoints(workdir / "checkpoints") as checkpoints:
        try:
            state, step, resumed_from = _resume(
                checkpoints, init_state, config, resumable, meta, workdir
            )
            run = _Run(workdir, checkpoints, schedule, report, eval_fn, config, meta)
            return run.train(state, step, resumed_from, train_step, callbacks)
        except OSError as error:
            latest = checkpoints.latest_step()
            where = (
                f"the newest checkpoint (step {latest}) is intact"
                if latest is not None
                else "no checkpoint was saved yet"
            )
            converted = disk_error(error, workdir, where)
            if converted is None:
                raise
            raise converted from None


def _check_meta(meta) -> dict[str, Any]:
    meta = json.loads(json.dumps(dict(meta or {})))  # as it comes back from a checkpoint
    for key in _RESERVED_META:
        if key in meta:
            raise ValueError(f"meta: {key!r} is filled in by fit; use another key")
    return meta


def _resume(checkpoints, init_state, config, resumable, meta, workdir):
    """``(state, step, resumed_from)``: the newest checkpoint's, once it is known to belong to
    this run and to be intact, or the initial state."""
    resumed_from = checkpoints.latest_step()
    if resumed_from is None:
        return init_state, 0, None
    saved = checkpoints.restore_meta(resumed_from)
    if config is not None and saved.get("config") is not None:
        ignored = {f.name for f in dataclasses.fields(Schedule)} | {*resumable, *_PARALLEL_KEYS}
        _check_same_config(saved["config"], to_dict(config), ignored, workdir)
    _check_same_meta({k: v for k, v in saved.items() if k not in _RESERVED_META}, meta, workdir)
    state, saved = checkpoints.restore(init_state, resumed_from)
    return state, int(saved.get("step", resumed_from)), resumed_from


class _Run:
    """One call of :func:`fit` once its work directory is checked: the loop and its records."""

    def __init__(self, workdir, checkpoints, schedule, report, eval_fn, config, meta):
        from rich.console import Console

        self.workdir = workdir
        self.checkpoints = checkpoints
        self.schedule = schedule
        self.report = report
        self.eval_fn = eval_fn
        self.eval_takes_step = _takes_two(eval_fn)
        # soft_wrap: a line written to a file or a pipe is never broken at 80 columns.
        self.console = report.console or Console(soft_wrap=True)
        self.primary = is_primary()  # the process that writes the run's files
        self.metrics = MetricsLog(workdir / "metrics.jsonl")
        self.config_dict = None if config is None else to_dict(config)
        self.meta = {"config": self.config_dict, **meta}
        self.interval = _Interval()
        self.rates = []  # items per second of each log interval of this run
        self.evaluation: dict[str, float] = {}  # the newest evaluation's values,
        self.evaluated_at: int | None = None  # and its step

    def train(self, state, step, resumed_from, train_step, callbacks) -> RunResult:
        self.devices = devices_of(state)
        # Every process reads the same records, so that all take the same path (an
        # evaluation runs in all or none); only the primary one rewrites the file.
        path = self.workdir / "metrics.jsonl"
        kept = self.metrics.truncate_after(step) if self.primary else read_metrics(path)
        kept = [r for r in kept if r["step"] <= step]
        for record in kept:
            if record["split"] == "eval" and record["step"] == step:
                self.evaluation, self.evaluated_at = _values(record), step
        self.events = None
        if self.primary:
            self.events = event_writer(self.workdir, first_step=step, config=self.config_dict)
        try:
            return self._train(state, step, resumed_from, train_step, callbacks)
        finally:
            if self.events is not None:
                self.events.close()

    def _train(self, state, step, resumed_from, train_step, callbacks) -> RunResult:
        if resumed_from is not None:
            self.console.print(f"Resuming from the checkpoint at step {step} in {self.workdir}")
        if self.config_dict is not None and self.primary:
            write_json(self.workdir / "config.json", self.config_dict)
        if step >= self.schedule.steps:
            self.console.print(
                f"Already trained for {step} steps (steps={self.schedule.steps}); nothing to do."
            )
            interrupted = False
        else:
            state, step, interrupted = self._loop(state, step, train_step, callbacks)
        if not interrupted and self.eval_fn is not None and self.evaluated_at != step:
            self._evaluate(state, step)  # e.g. a run cut short earlier, now asked for no more
        self._plot()
        evaluation = self.evaluation if self.evaluated_at == step and not interrupted else {}
        return RunResult(
            state, step, bool(interrupted), self.workdir, resumed_from, evaluation,
            stopped_by=interrupted or None,
            items_per_s=statistics.median(self.rates) if self.rates else None,
        )  # fmt: skip

    def _loop(self, state, step, train_step, callbacks):
        total = self.schedule.steps
        with progress(self.console, self.report.title, total, step) as bar, _signals() as stop:
            self.interval.reset()
            in_flight = None  # the previous step's metrics, until it has finished
            profile = _Profile(self.workdir, self.schedule.profile_steps, self.primary)
            try:
                while step < total and not stop.requested:
                    profile.before_step()
                    state, step_metrics = train_step(state, step)
                    # At most two steps in flight: the next is dispatched while one runs,
                    # but the queue stays short. (With more, XLA's CPU client can start a
                    # step on one device before an earlier one on another and deadlock in
                    # the gradient's all-reduce: seen with jaxlib 0.10.2 on host devices.)
                    jax.block_until_ready(in_flight)
                    in_flight = step_metrics
                    step += 1
                    self.interval.add(step_metrics)
                    profile.after_step(step_metrics, self.console)
                    for callback in callbacks:
                        callback(step, state, step_metrics)
                    self._record(state, step, bar, flush=step == total)
                    if step % self.schedule.checkpoint_every == 0 or step == total:
                        self._save(state, step)
                    bar.advance(step)
            except KeyboardInterrupt:
                if stop.requested:
                    raise  # a second signal: abort now; the newest checkpoint is intact
                stop.requested = "SIGINT"  # Ctrl-C where no handler could be installed
            finally:
                profile.stop(self.console)
            interrupted = stop.requested if step < total else None
            if interrupted:
                # Complete the step's records, then save: a checkpoint implies its records.
                self._record(state, step, bar, flush=True)
                self._save(state, step)
                self.console.print(
                    f"Interrupted ({interrupted}): saved a checkpoint at step {step} in "
                    f"{self.workdir}. Run the same command again to resume."
                )
        return state, step, interrupted

    def _record(self, state, step, bar, *, flush):
        """The records of ``step``: training means (at a log step, a checkpoint step, or when
        ``flush``), then the evaluation if one is due and not yet recorded."""
        s = self.schedule
        at_checkpoint = step % s.checkpoint_every == 0
        if self.interval.count and (step % s.log_every == 0 or at_checkpoint or flush):
            means, rate = self.interval.means(self.report.items_per_step)
            self.rates.append(rate)
            if self.primary:
                record = {**means, "items_per_s": rate, "devices": self.devices}
                self.metrics.write(step, "train", **record)
                if self.events is not None:
                    self.events.scalars(step, "train", record)
            bar.log(step, means, rate, self.report.item_name, self.devices)
            self.interval.reset()
        final = step == s.steps
        due = final or bool(s.eval_every and step % s.eval_every == 0)
        if self.eval_fn is not None and due and self.evaluated_at != step:
            self._evaluate(state, step)

    def _evaluate(self, state, step):
        found = self.eval_fn(state, step) if self.eval_takes_step else self.eval_fn(state)
        texts = {k: v for k, v in found.items() if isinstance(v, str)}  # e.g. a sample
        values = {k: float(v) for k, v in found.items() if k not in texts}
        if self.primary:
            self.metrics.write(step, "eval", **values)
            if self.events is not None:
                self.events.scalars(step, "eval", values)
                for name, text in texts.items():
                    self.events.text(step, f"eval/{name}", text)
                self.events.flush()
        shown = "  ".join(f"{k} {format_value(v)}" for k, v in values.items())
        self.console.print(f"step {step}: eval {shown}")
        self.evaluation, self.evaluated_at = values, step

    def _save(self, state, step):
        if step not in self.checkpoints.all_steps():
            self.checkpoints.save(step, state, {**self.meta, "step": step})

    def _plot(self):
        if not self.primary:
            return
        try:
            plot_metrics(
                self.workdir / "metrics.jsonl",
                self.workdir / "curves.png",
                panels=self.report.panels,
                title=self.report.title,
            )
        except ImportError as error:
            self.console.print(f"No plots: {error}")


def _values(record) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in ("step", "split")}


class _Profile:
    """A JAX profiler trace of ``steps`` training steps, from the second step this process
    runs (the first compiles), into ``workdir/profile``; only the primary process traces."""

    def __init__(self, workdir, steps, primary):
        self.path = pathlib.Path(workdir) / "profile"
        self.left = steps if primary else 0
        self.seen = 0
        self.tracing = False

    def before_step(self):
        if self.left and not self.tracing and self.seen == 1:
            jax.profiler.start_trace(str(self.path), create_perfetto_trace=True)
            self.tracing = True

    def after_step(self, metrics, console):
        self.seen += 1
        if self.tracing:
            self.left -= 1
            if not self.left:
                jax.block_until_ready(metrics)
                self.stop(console)

    def stop(self, console):
        if self.tracing:
            jax.profiler.stop_trace()
            self.tracing = False
            console.print(f"Profiler trace of the training steps in {self.path}")


class _Interval:
    """Training metrics summed since the last record, and when the interval began."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.sums, self.count, self.start = None, 0, time.perf_counter()

    def add(self, metrics):
        self.sums = metrics if self.sums is None else jax.tree.map(_add, self.sums, metrics)
        self.count += 1

    def means(self, items_per_step) -> tuple[dict[str, float], float]:
        means = {k: float(v) / self.count for k, v in jax.device_get(self.sums).items()}
        rate = self.count * items_per_step / max(time.perf_counter() - self.start, 1e-9)
        return means, rate


def _add(a, b):
    return a + b


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:59] + "…"


def _check_same_config(saved, current, ignored, workdir):
    changed = sorted(
        k
        for k in set(saved) | set(current)
        if k not in ignored and saved.get(k, "<absent>") != current.get(k, "<absent>")
    )
    if changed:
        details = ", ".join(
            f"{k}: checkpoint {_short(saved.get(k, '<absent>'))}, "
            f"now {_short(current.get(k, '<absent>'))}"
            for k in changed
        )
        raise ConfigError(
            f"{changed[0]}: the checkpoint in {str(workdir)!r} was trained with another config "
            f"({details}). Nothing was changed; use the same values to resume it, or a new "
            "work directory for a new run."
        )


def _check_same_meta(saved, current, workdir):
    for key in [*current, *(k for k in saved if k not in current)]:
        old, new = saved.get(key, "<absent>"), current.get(key, "<absent>")
        if old != new:
            raise ConfigError(
                f"{key}: the {key} differs from the one the checkpoint in {str(workdir)!r} "
                f"was trained on (checkpoint {_short(old)}, now {_short(new)}). Nothing was "
                f"changed; use the same {key} to resume it, or a new work directory."
            )


class _Stop:
    requested: str | None = None  # the name of the signal that asked the run to stop


class Aborted(KeyboardInterrupt):
    """A second stop signal: the run aborts at once (its newest checkpoint is intact)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


#: The signals that stop a run cleanly: Ctrl-C, and how machines are shut down.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def _signals():
    """The first SIGINT or SIGTERM only sets ``requested``; a second one raises
    :class:`Aborted`."""
    stop = _Stop()
    if threading.current_thread() is not threading.main_thread():
        yield stop  # signal handlers live in the main thread; Ctrl-C raises there instead
        return

    def handler(signum, frame):
        if stop.requested:
            raise Aborted(signum)
        stop.requested = signal.Signals(signum).name

    previous = {signum: signal.signal(signum, handler) for signum in STOP_SIGNALS}
    try:
        yield stop
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def _takes_two(fn) -> bool:
    """Whether ``fn`` can be called with two positional arguments (state, step)."""
    if fn is None:
        return False
    try:
        inspect.signature(fn).bind(None, None)
    except TypeError:
        return False
    except ValueError:  # no signature to read: call it as documented first
        return False
    return True
