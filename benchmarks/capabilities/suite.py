"""Trains every cell on every task with the same budget, resumably, and writes the table,
the heat map and the verdict on each published claim.

    python -m benchmarks.capabilities [--cells a,b] [--tasks x,y] [--quick] [--scale F]
                                      [--workdir DIR] [--out DIR] [--seed N]

Each (task, cell) run is a :func:`jaxrnn.train.fit` run in
``<workdir>/<task>/<cell>``: progress on the terminal, checkpoints, Ctrl-C or
SIGTERM saves and stops, and the same command resumes (finished runs are read
back from their ``result.json``, not trained again). Every cell on a task sees
the same training batches, the same test set and the same initialisation key.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import pathlib
import signal
import sys
import time
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxrnn
from benchmarks.capabilities import TASKS, model
from benchmarks.capabilities.claims import CLAIMS, verdicts
from jaxrnn import train

HERE = pathlib.Path(__file__).resolve().parent
#: Where the default run's table, heat map and figures go.
PUBLISHED = HERE.parent
TABLE, FIGURE, DATA = "RESULTS_capabilities.md", "capabilities.png", "results_capabilities.json"
CLIP_NORM = 1.0
LOG_EVERY, CHECKPOINT_EVERY = 50, 200
#: Test sequences evaluated per call (the S6's state over a long sequence is large).
EVAL_CHUNK = 64


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """One (task, cell) run, as saved with its checkpoints: a resumption with other values
    is refused (the schedule's keys may change)."""

    task: str
    cell: str
    hidden_size: int
    layers: int
    embed: int
    batch_size: int
    lr: float
    clip_norm: float
    eval_size: int
    seed: int
    steps: int
    log_every: int
    checkpoint_every: int


def vector_cells() -> tuple[list[str], list[str]]:
    """``(cells, skipped)``: the registered cells that read feature vectors, and those whose
    inputs have spatial axes (a ConvLSTM), which this suite cannot feed."""
    cells, skipped = [], []
    for name in jaxrnn.cell_names():
        (skipped if jaxrnn.get_cell(name).feature_axes is not None else cells).append(name)
    return cells, skipped


def _task_keys(task, seed: int):
    """``(init, train, test)`` keys of a task: the same for every cell."""
    key = jax.random.fold_in(jax.random.key(seed), zlib.crc32(task.name.encode()))
    return jax.random.split(key, 3)


def budget_of(task, *, quick: bool = False, scale: float = 1.0):
    """The task's budget: the default one, or ``--quick``'s, with its steps times ``scale``."""
    budget = task.quick if quick else task.budget
    return dataclasses.replace(budget, steps=max(round(budget.steps * scale), 1))


def train_one(task, cell: str, workdir, *, quick: bool = False, seed: int = 0, scale=1.0):
    """Trains ``cell`` on ``task`` in ``workdir`` (resuming it).

    Returns ``(result, stopped_by)``: the result's dict and ``None``, or ``None`` and the
    signal's name (``"SIGINT"``, ``"SIGTERM"``) if one stopped the run (after it saved).
    """
    workdir = pathlib.Path(workdir)
    budget = budget_of(task, quick=quick, scale=scale)
    h = model.hidden_size(cell)
    config = RunConfig(
        task=task.name,
        cell=cell,
        hidden_size=h,
        layers=model.LAYERS,
        embed=model.EMBED,
        batch_size=budget.batch_size,
        lr=budget.lr,
        clip_norm=CLIP_NORM,
        eval_size=budget.eval_size,
        seed=seed,
        steps=budget.steps,
        log_every=min(LOG_EVERY, budget.steps),
        checkpoint_every=min(CHECKPOINT_EVERY, max(budget.steps // 2, 1)),
    )
    result_path = workdir / "result.json"
    if result_path.is_file():
        saved = json.loads(result_path.read_text())
        if saved.get("config") == dataclasses.asdict(config):
            return _with_chance(saved, task, budget, seed), None
    init_key, _, test_key = _task_keys(task, seed)
    initial_state, train_step, scored = _programs(task, cell, h, budget, seed)
    state = initial_state(init_key)
    params = state["params"]

    test = jax.device_get(_test_batch(task.make_batch, test_key, budget.eval_size))
    chunks = [
        jax.tree.map(lambda a, i=i: a[:, i : i + EVAL_CHUNK], test)
        for i in range(0, budget.eval_size, EVAL_CHUNK)
    ]

    def evaluate(state):
        values, weights = zip(*(scored(state["params"], chunk) for chunk in chunks), strict=True)
        weights = np.asarray(weights)
        return {task.metric_name: float(np.sum(np.asarray(values) * weights) / weights.sum())}

    elapsed_path = workdir / "elapsed.json"
    start = time.perf_counter()
    run = train.fit(
        workdir,
        init_state=state,
        train_step=train_step,
        schedule=train.Schedule.from_config(config),
        eval_fn=evaluate,
        config=config,
        report=train.Report(
            title=f"{task.name} {cell}", items_per_step=budget.batch_size, item_name="seqs"
        ),
    )
    before = json.loads(elapsed_path.read_text())["seconds"] if elapsed_path.is_file() else 0.0
    seconds = before + time.perf_counter() - start
    _write(elapsed_path, {"seconds": seconds})
    if run.interrupted:
        return None, run.stopped_by or "SIGINT"
    value = run.evaluation[task.metric_name]
    total = model.count(params)
    result = {
        "task": task.name,
        "cell": cell,
        "metric_name": task.metric_name,
        "metric": value,
        "train_metric": _last_train_metric(workdir),
        "seconds": seconds,
        "params": total,
        "recurrent_params": model.count(params["layers"]),
        "hidden_size": h,
        "state_size": model.state_size(cell, h),
        "config": dataclasses.asdict(config),
    }
    _write(result_path, result)
    return _with_chance(result, task, budget, seed), None


@functools.cache
def _programs(task, cell: str, h: int, budget, seed: int):
    """``(initial_state, train_step, scored)`` of a run, jitted; the same functions (and so
    the same compiled programs) for every run of the same task, cell and budget."""
    _, train_key, _ = _task_keys(task, seed)
    optimizer = optax.chain(optax.clip_by_global_norm(CLIP_NORM), optax.adam(budget.lr))

    @jax.jit  # one program, rather than one per operation of the initialisers
    def initial_state(key):
        params = model.init(
            key,
            cell,
            h,
            input_size=task.input_size,
            output_size=task.output_size,
            tokens=task.tokens,
        )
        return {"params": params, "opt_state": optimizer.init(params)}

    def loss_fn(params, batch):
        outputs = model.apply(cell, params, batch.xs)
        return task.loss(outputs, batch), task.metric(outputs, batch)

    @jax.jit
    def train_step(state, step):
        batch = task.make_batch(jax.random.fold_in(train_key, step), budget.batch_size, "train")
        (loss, metric), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"], batch)
        updates, opt_state = optimizer.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        return {"params": params, "opt_state": opt_state}, {"loss": loss, "metric": metric}

    @jax.jit
    def scored(params, batch):
        return task.metric(model.apply(cell, params, batch.xs), batch), jnp.sum(batch.weights)

    return initial_state, train_step, scored


def chance_on_test_set(task, budget, seed: int) -> float:
    """The chance level on the test set itself: the metric of predicting ``task.constant``
    at every step (for a regression), else ``task.chance``."""
    if task.constant is None:
        return task.chance
    test = _test_batch(task.make_batch, _task_keys(task, seed)[2], budget.eval_size)
    outputs = jnp.full((*test.targets.shape, task.output_size), task.constant)
    return float(task.metric(outputs, test))


def _with_chance(result, task, budget, seed) -> dict:
    """``result`` with the test set's chance level and the skill measured from it."""
    chance = chance_on_test_set(task, budget, seed)
    return {**result, "chance": chance, "skill": task.skill(result["metric"], chance)}


@functools.partial(jax.jit, static_argnums=(0, 2))
def _test_batch(make_batch, key, size):
    return make_batch(key, size, "test")


def _last_train_metric(workdir) -> float | None:
    records = train.read_metrics(workdir / "metrics.jsonl", split="train")
    return records[-1]["metric"] if records else None


def _write(path, data) -> None:
    path = pathlib.Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


def run_suite(cells, tasks, workdir, *, quick=False, seed=0, scale=1.0):
    """Trains each cell on each task (task by task); returns ``(results, stopped_by)``, the
    latter the signal that stopped the suite, or ``None``."""
    results = []
    for task in tasks:
        for cell in cells:
            where = pathlib.Path(workdir) / task.name / cell
            result, stopped_by = train_one(task, cell, where, quick=quick, seed=seed, scale=scale)
            if stopped_by is not None:
                return results, stopped_by
            results.append(result)
    return results, None


# Outputs ---------------------------------------------------------------------------------


def _format(task, value: float) -> str:
    return f"{value:.4f}" if task.metric_name == "MSE" else f"{value:.2f}"


def budget_rule(quick: bool) -> str:
    return (
        f"{model.LAYERS} recurrent layers of the cell between a {model.EMBED}-wide encoder "
        f"(embedding or linear map) and a linear readout; each cell's hidden size h is the one "
        f"whose recurrent layers have the parameter count closest to {model.TARGET_PARAMS:,}; "
        f"cell options fixed per cell: {_options()}; Adam, gradients clipped to global norm "
        f"{CLIP_NORM:g}, one learning rate per task for every cell"
        + (" (--quick: a smoke run, not a result)" if quick else "")
    )


def _options() -> str:
    if not model.CELL_OPTIONS:
        return "none (every cell's defaults)"
    shown = "; ".join(
        f"{cell} {', '.join(f'{k}={v}' for k, v in opts.items())}"
        for cell, opts in model.CELL_OPTIONS.items()
    )
    return f"{shown}; the others their defaults"


def table(results, tasks, cells, *, quick=False, skipped=(), scale=1.0) -> str:
    """The Markdown report: budgets, the metric, time and parameter tables, the claims."""
    by = {(r["task"], r["cell"]): r for r in results}
    first = {r["cell"]: r for r in results}
    lines = ["# What each cell can learn", ""]
    lines += [
        "Written by `python -m benchmarks.capabilities"
        + (" --quick" if quick else "")
        + (f" --scale {scale:g}" if scale != 1 else "")
        + f"` on {jax.default_backend().upper()} "
        + f"(jax {jax.__version__}).",
        "",
        f"Model: {budget_rule(quick)}.",
    ]
    if skipped:
        lines += ["", f"Skipped (inputs with spatial axes): {', '.join(skipped)}."]
    total = sum(r["seconds"] for r in results)
    lines += ["", f"Sum of the runs' times: {total / 60:.1f} min."]
    lines += [
        "",
        "## Tasks and budgets",
        "",
        "| task | what | steps | batch | lr | chance on the test set |",
        "|---|---|---|---|---|---|",
    ]
    chances = {r["task"]: r["chance"] for r in results if "chance" in r}
    for task in tasks:
        b = budget_of(task, quick=quick, scale=scale)
        chance = f"{chances.get(task.name, task.chance):.{4 if task.metric_name == 'MSE' else 3}f}"
        lines.append(
            f"| {task.title} | {task.description} | {b.steps} | {b.batch_size} | {b.lr:g} "
            f"| {chance} |"
        )
    header = "| cell | h | recurrent params | state | " + " | ".join(t.title for t in tasks) + " |"
    rule = "|---" * (4 + len(tasks)) + "|"

    def table_rows(cell_text):
        """One row per cell: its sizes, then ``cell_text(task, result)`` per task run."""
        out = []
        for cell in cells:
            if cell not in first:
                continue
            r = first[cell]
            row = [cell, str(r["hidden_size"]), f"{r['recurrent_params']:,}"]
            row += [f"{r['state_size']:,}"]
            row += [cell_text(t, by[t.name, cell]) if (t.name, cell) in by else "" for t in tasks]
            out.append("| " + " | ".join(row) + " |")
        return out

    lines += ["", "## Test metric", "", "MSE for the adding problem (lower is better), accuracy "
              "elsewhere (higher is better).", "", header, rule]  # fmt: skip
    lines += table_rows(lambda t, r: _format(t, r["metric"]))
    lines += ["", "## Training metric", "",
              f"The same metric on the training batches, averaged over the last {LOG_EVERY} "
              "steps: where it is high and the test metric is not, the cell learned the task "
              "at the training lengths but did not extrapolate.", "", header, rule]  # fmt: skip
    lines += table_rows(
        lambda t, r: "" if r["train_metric"] is None else _format(t, r["train_metric"])
    )
    lines += ["", "## Time (seconds: compilation, training and evaluation)", "", header, rule]
    lines += table_rows(lambda t, r: f"{r['seconds']:.0f}")
    lines += ["", "## Parameters (the whole model: encoder, recurrent layers, readout)", "",
              header, rule]  # fmt: skip
    for cell in cells:
        if cell not in first:
            continue
        r = first[cell]
        row = [cell, str(r["hidden_size"]), f"{r['recurrent_params']:,}", f"{r['state_size']:,}"]
        row += [f"{by[t.name, cell]['params']:,}" if (t.name, cell) in by else "" for t in tasks]
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "## Published claims", ""]
    lines += [f"- {line}" for line in verdicts(CLAIMS, results, TASKS)]
    return "\n".join(lines) + "\n"


def heat_map(results, tasks, cells, path, *, quick=False) -> None:
    """Cells as rows, tasks as columns; colour from chance (0) to perfect (1), the metric
    printed in each square."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by = {(r["task"], r["cell"]): r for r in results}
    rows = [c for c in cells if any((t.name, c) in by for t in tasks)]
    skill = np.full((len(rows), len(tasks)), np.nan)
    for i, cell in enumerate(rows):
        for j, task in enumerate(tasks):
            if (task.name, cell) in by:
                skill[i, j] = by[task.name, cell]["skill"]
    fig, ax = plt.subplots(figsize=(1.25 * len(tasks) + 3.0, 0.42 * len(rows) + 2.4))
    cmap = plt.get_cmap("RdYlGn")
    image = ax.imshow(skill, cmap=cmap, vmin=0, vmax=1, aspect="auto")
    for i, cell in enumerate(rows):
        for j, task in enumerate(tasks):
            if (task.name, cell) in by:
                text = _format(task, by[task.name, cell]["metric"])
                dark = skill[i, j] < 0.2 or skill[i, j] > 0.85  # the map's dark ends
                ax.text(j, i, text, ha="center", va="center", fontsize=9,
                        color="white" if dark else "black")  # fmt: skip
    ax.set_xticks(range(len(tasks)))
    ax.set_xticklabels(
        [f"{t.title}\n({t.metric_name})" for t in tasks], rotation=30, ha="right", fontsize=9
    )
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([f"{c} (h={by_cell(by, c)['hidden_size']})" for c in rows], fontsize=9)
    ax.set_title(
        "What each cell can learn" + (" (--quick smoke run)" if quick else "")
        + f": ~{model.TARGET_PARAMS // 1000}k recurrent parameters each",
        fontsize=10,
    )  # fmt: skip
    bar = fig.colorbar(image, ax=ax, fraction=0.035, pad=0.02)
    bar.set_ticks([0, 0.5, 1])
    bar.set_ticklabels(["chance", "half", "perfect"])
    bar.ax.tick_params(labelsize=8)
    fig.text(
        0.01, 0.01,
        "Colour: from chance (0) to perfect (1); adding: MSE from that of predicting 1 on the "
        "test set to 0. "
        "Printed: the test metric.",
        fontsize=7.5, color="0.3",
    )  # fmt: skip
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def by_cell(by, cell):
    return next(r for (_, c), r in by.items() if c == cell)


def write_outputs(results, tasks, cells, out, *, quick=False, skipped=(), scale=1.0) -> None:
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / TABLE).write_text(
        table(results, tasks, cells, quick=quick, skipped=skipped, scale=scale)
    )
    _write(out / DATA, {"quick": quick, "scale": scale, "results": results})
    heat_map(results, tasks, cells, out / FIGURE, quick=quick)


# Command line ----------------------------------------------------------------------------


def _choose(value, known, what):
    if value is None:
        return list(known)
    names = [n.strip() for n in value.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if not names or unknown:
        got = unknown[0] if unknown else value
        raise train.ConfigError(f"--{what}: expected names from {', '.join(known)}, got {got!r}")
    return names


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.capabilities",
        description="Trains every registered cell on the capability tasks with one budget "
        "and writes a table and a heat map.",
    )
    parser.add_argument("--cells", help="comma-separated cells (default: all that read vectors)")
    parser.add_argument("--tasks", help=f"comma-separated tasks from {', '.join(TASKS)}")
    parser.add_argument("--quick", action="store_true", help="a tiny budget: a smoke run")
    parser.add_argument(
        "--scale", type=float, default=1.0,
        help="train every cell on every task for this many times the steps (default 1)",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="data and initialisation seed")
    parser.add_argument(
        "--workdir", type=pathlib.Path, default=None,
        help="run directories (default: runs/capabilities, runs/capabilities-quick)",
    )  # fmt: skip
    parser.add_argument(
        "--out", type=pathlib.Path, default=None,
        help=f"where the table, heat map and JSON go (default: {PUBLISHED.name}/ for a full "
        "run of every cell and task, else the work directory)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    with train.user_errors("capabilities"):
        available, skipped = vector_cells()
        if args.cells is not None:
            for name in (n.strip() for n in args.cells.split(",")):
                if name in skipped:
                    raise train.ConfigError(
                        f"--cells: expected cells that read vectors, got {name!r}, whose "
                        "inputs have spatial axes"
                    )
        cells = _choose(args.cells, available, "cells")
        tasks = [TASKS[n] for n in _choose(args.tasks, list(TASKS), "tasks")]
        workdir = args.workdir or pathlib.Path("runs") / (
            "capabilities-quick" if args.quick else "capabilities"
        )
        if args.scale != 1 and args.workdir is None:
            workdir = workdir.with_name(f"{workdir.name}-x{args.scale:g}")
        if not args.scale > 0:
            raise train.ConfigError(f"--scale: expected a number > 0, got {args.scale}")
        full = args.cells is None and args.tasks is None and not args.quick and args.scale == 1
        out = args.out or (PUBLISHED if full else workdir)
        print(f"capabilities: {len(cells)} cells x {len(tasks)} tasks in {workdir}")
        if skipped:
            print(f"capabilities: skipped (spatial inputs): {', '.join(skipped)}")
        print(f"capabilities: {budget_rule(args.quick)}")
        for cell in cells:
            h = model.hidden_size(cell)
            print(f"  {cell:8s} h={h:4d}  recurrent params {model.recurrent_params(cell, h):,}")
        start = time.perf_counter()
        try:
            results, stopped_by = run_suite(
                cells, tasks, workdir, quick=args.quick, seed=args.seed, scale=args.scale
            )
        except KeyboardInterrupt as error:  # a second signal: aborted mid-step
            print("capabilities: aborted; the newest checkpoints are intact", file=sys.stderr)
            return 128 + getattr(error, "signum", signal.SIGINT)
        if stopped_by is not None:
            print("capabilities: stopped; run the same command again to resume", file=sys.stderr)
            return 128 + signal.Signals[stopped_by]
        wall = time.perf_counter() - start
        write_outputs(
            results, tasks, cells, out, quick=args.quick, skipped=skipped, scale=args.scale
        )
        print(f"capabilities: wrote {out / TABLE}, {out / FIGURE} ({wall / 60:.1f} min)")
        for line in verdicts(CLAIMS, results, TASKS):
            print(f"  {line}")
    return 0
