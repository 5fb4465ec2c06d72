"""The adding problem: the vanishing gradient, and the gates that cure it.

Each sequence has T steps of two channels: a value drawn uniformly from [0, 1],
and a marker that is 1 at one random step in the first half and one in the
second half, 0 elsewhere. The target, read from the last hidden state, is the
sum of the two marked values (Hochreiter & Schmidhuber 1997; Arjovsky et al.
2016). Always answering 1 scores the baseline MSE 1/6 ≈ 0.167.

The tanh RNN, the LSTM and the GRU are trained on the same data with Adam and
gradient clipping. The gradient that reaches the first marker has crossed at
least T/2 Jacobians; for the tanh RNN it vanishes and the RNN stays at the
baseline, while the gated cells solve the task. Plots in the work directory:

* ``loss.png``: test MSE of each cell against the baseline;
* ``hidden_grad_norms.png``: ‖∂L/∂h_t‖ against t for each cell, at
  initialisation and after training (:func:`jaxrnn.hidden_grad_norms`, in
  float64, so that a vanishing gradient is drawn as it is, not cut off where its
  float32 square underflows);
* ``rnn_gain.png``: the same for tanh RNNs whose ``W_hh`` is scaled to norm
  0.5 … 2: vanishing below 1, growing above;
* ``clipping.png``: the global gradient norm of every cell during training,
  before and after clipping.

    python examples/adding.py [--config FILE] [--workdir DIR] [key=value ...]
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
import sys
from typing import Annotated

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxrnn
from jaxrnn import train

if __package__:  # imported as examples.adding
    from . import _common as common
else:  # run as a script, or imported with examples/ on the path
    import _common as common

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "adding.yaml"
BASELINE = 1 / 6  # MSE of always predicting 1: Var(U1 + U2) = 2/12


@dataclasses.dataclass(frozen=True)
class Config:
    """See ``configs/adding.yaml`` for what each key means."""

    seq_len: Annotated[int, train.Range(ge=2)]  # a marker in each half
    hidden_size: common.Count
    batch_size: common.Count
    steps: common.Count
    lr: common.Positive
    clip_norm: common.Positive
    eval_size: common.Count
    eval_every: common.Count
    log_every: common.Count
    checkpoint_every: common.Count
    seed: common.Seed
    cells: common.CellName = "rnn,lstm,gru"  # comma-separated registered cells
    devices: common.Devices = None  # each batch split over them; None: all local devices
    precision: common.Precision = "float32"  # or bfloat16: the cell's compute dtype
    profile_steps: common.Size = 0  # > 0: trace that many training steps (see Schedule)

    def __post_init__(self):
        common.data_parallel(self)  # a device count this machine lacks, an uneven batch


def panels(config: Config) -> tuple[train.Panel, ...]:
    """``curves.png`` of one cell: training and test MSE on one axis against the
    baseline; the gradient norm before and after clipping on another."""
    return (
        train.Panel("MSE", ("train/loss", "eval/mse"), lines={"predict 1": BASELINE}, log_y=True),
        train.Panel(
            "global gradient norm",
            ("train/grad_norm", "train/clipped_norm"),
            lines={"clip_norm": config.clip_norm},
            log_y=True,
        ),
    )


def make_batch(key, batch_size: int, seq_len: int):
    """``xs (T, B, 2)`` (value, marker) and ``targets (B,)``."""
    if seq_len < 2:
        raise train.ConfigError(f"seq_len: expected at least 2, got {seq_len}")
    k_values, k_first, k_second = jax.random.split(key, 3)
    values = jax.random.uniform(k_values, (seq_len, batch_size))
    half = seq_len // 2
    first = jax.random.randint(k_first, (1, batch_size), 0, half)
    second = jax.random.randint(k_second, (1, batch_size), half, seq_len)
    t = jnp.arange(seq_len).reshape(seq_len, 1)
    markers = ((t == first) | (t == second)).astype(values.dtype)
    return jnp.stack([values, markers], axis=-1), jnp.sum(values * markers, axis=0)


def init_model(key, cell: str, hidden_size: int):
    k_cell, k_out = jax.random.split(key)
    return {
        "cell": jaxrnn.get_cell(cell).init(k_cell, 2, hidden_size),
        "w_out": jax.random.normal(k_out, (hidden_size,)) / jnp.sqrt(hidden_size),
        "b_out": jnp.zeros(()),
    }


def readout(params, h):
    return h @ params["w_out"] + params["b_out"]


def loss_fn(cell: str, params, xs, targets, dtype=None):
    _, ys = jaxrnn.scan(jaxrnn.get_cell(cell).step, params["cell"], xs, dtype=dtype)
    return jnp.mean((readout(params, ys[-1]) - targets) ** 2)


def make_optimizer(config: Config):
    return optax.chain(optax.clip_by_global_norm(config.clip_norm), optax.adam(config.lr))


def _keys(seed):
    init_key, data_key, test_key = jax.random.split(jax.random.key(seed), 3)
    return init_key, data_key, test_key


def train_cell(cell: str, config: Config, workdir, *, callbacks=()) -> train.RunResult:
    """Trains one cell in ``workdir`` (resuming if it holds a checkpoint)."""
    init_key, data_key, test_key = _keys(config.seed)
    dp = common.data_parallel(config)
    dtype = common.compute_dtype(config)
    params = init_model(init_key, cell, config.hidden_size)
    optimizer = make_optimizer(config)
    test_xs, test_targets = make_batch(test_key, config.eval_size, config.seq_len)
    state = dp.replicate({"params": params, "opt_state": optimizer.init(params)})

    @functools.partial(
        jax.jit, out_shardings=(jax.tree.map(lambda a: a.sharding, state), dp.replicated())
    )
    def train_step(state, step):
        # The batch is drawn whole from the step number, then split over the devices
        # (each draws only its own part: the random bits do not depend on the split).
        xs, targets = make_batch(
            jax.random.fold_in(data_key, step), config.batch_size, config.seq_len
        )
        xs, targets = dp.shard(xs, axis=1), dp.shard(targets, axis=0)
        loss, grads = jax.value_and_grad(loss_fn, argnums=1)(
            cell, state["params"], xs, targets, dtype
        )
        norm = optax.tree.norm(grads)
        updates, opt_state = optimizer.update(grads, state["opt_state"], state["params"])
        state = {"params": optax.apply_updates(state["params"], updates), "opt_state": opt_state}
        clipped = jnp.minimum(norm, config.clip_norm)  # what clip_by_global_norm passes on
        return state, {"loss": loss, "grad_norm": norm, "clipped_norm": clipped}

    test_loss = jax.jit(functools.partial(loss_fn, cell, dtype=dtype))

    def evaluate(state):
        return {"mse": test_loss(common.on_host(state["params"]), test_xs, test_targets)}

    return train.fit(
        workdir,
        init_state=state,
        train_step=train_step,
        schedule=train.Schedule.from_config(config),
        eval_fn=evaluate,
        config=config,
        callbacks=callbacks,
        report=train.Report(
            title=f"adding {cell}",
            items_per_step=config.batch_size,
            item_name="seqs",
            panels=panels(config),
        ),
    )


def train_and_evaluate(config: Config, workdir, *, cells=None, callbacks=()) -> train.RunResult:
    """Trains each cell in ``workdir/<cell>``, then writes the plots and ``summary.json``.

    ``cells`` (names of registered cells) defaults to the config's ``cells``.

    Returns a :class:`train.RunResult` whose ``state`` maps each cell to its
    trained state and whose ``summary`` holds ``{"mse": {cell: final test MSE}}``;
    on Ctrl-C it returns the interrupted cell's result after saving it, and
    running again resumes.
    """
    workdir = pathlib.Path(workdir)
    cells = common.split_names(config.cells) if cells is None else tuple(cells)
    results = {}
    for cell in cells:
        result = train_cell(cell, config, workdir / cell, callbacks=callbacks)
        if result.interrupted:
            return result
        results[cell] = result
    mse = {cell: r.evaluation["mse"] for cell, r in results.items()}
    summary = {"seq_len": config.seq_len, "steps": config.steps, "baseline": BASELINE, "mse": mse}
    common.write_json(workdir / "summary.json", summary)
    if common.is_writer():
        trained = {cell: common.on_host(r.state["params"]) for cell, r in results.items()}
        plot_all(config, workdir, trained)
    for cell in cells:
        print(f"{cell:5s} test MSE {mse[cell]:.4f}   (baseline {BASELINE:.3f})")
    return train.RunResult(
        state={cell: r.state for cell, r in results.items()},
        step=config.steps,
        interrupted=False,
        workdir=workdir,
        summary={"mse": mse},
    )


@functools.partial(jax.jit, static_argnames="cell")
def grad_norms_over_time(cell: str, params, xs, targets):
    """Mean over the batch of ‖∂L/∂h_t‖ for the adding loss, shape ``(T,)``."""

    def loss_of_outputs(ys):
        return jnp.mean((readout(params, ys[-1]) - targets) ** 2)

    norms = jaxrnn.hidden_grad_norms(
        jaxrnn.get_cell(cell).step, params["cell"], xs, loss_of_outputs
    )
    return jnp.mean(norms, axis=1)


def grad_norms_in_float64(cell: str, params, xs, targets) -> np.ndarray:
    """:func:`grad_norms_over_time` computed in float64, for the plots.

    The RNN's gradient vanishes geometrically going back in time. In float32 the
    squares that make up a norm underflow once the gradient falls below about 1e-19
    (their sum reads 0 below about 1e-45), which would draw a false flat floor and a
    vertical drop to it; float64 follows the gradient down to about 1e-300.
    """

    def wide(a):
        return jnp.asarray(a, jnp.float64) if jnp.issubdtype(a.dtype, jnp.floating) else a

    with jax.enable_x64(True):
        wide_params = jax.tree.map(wide, params)
        return np.asarray(grad_norms_over_time(cell, wide_params, wide(xs), wide(targets)))


def plot_all(config: Config, workdir: pathlib.Path, trained: dict) -> None:
    init_key, _, test_key = _keys(config.seed)
    xs, targets = make_batch(test_key, min(config.eval_size, 256), config.seq_len)
    colors = {"rnn": "tab:red", "lstm": "tab:blue", "gru": "tab:green"}
    t = np.arange(1, config.seq_len + 1)

    fig, ax = train.figure()
    for cell in trained:
        records = train.read_metrics(workdir / cell / "metrics.jsonl")
        for split, style in (("train", "-"), ("eval", "o")):
            pts = [
                (r["step"], r["loss" if split == "train" else "mse"])
                for r in records
                if r["split"] == split
            ]
            if pts:
                ax.plot(
                    *zip(*pts, strict=True),
                    style,
                    color=colors.get(cell),
                    ms=3,
                    alpha=0.5 if split == "train" else 1.0,
                    label=f"{cell} ({'train' if split == 'train' else 'test'})",
                )
    ax.axhline(BASELINE, color="k", ls="--", lw=1, label="predict 1 (0.167)")
    ax.set(xlabel="step", ylabel="MSE", yscale="log", title=f"Adding problem, T = {config.seq_len}")
    ax.legend(fontsize=8)
    train.save_figure(fig, workdir / "loss.png")

    fig, ax = train.figure()
    for cell, params in trained.items():
        start = init_model(init_key, cell, config.hidden_size)
        for p, style, when in ((start, "--", "init"), (params, "-", "trained")):
            norms = grad_norms_in_float64(cell, p, xs, targets)
            ax.plot(t, norms, style, color=colors.get(cell), label=f"{cell} {when}")
    ax.set(
        xlabel="t",
        ylabel="mean ‖∂L/∂h_t‖",
        yscale="log",
        title="Gradient reaching each hidden state (float64)",
    )
    ax.legend(fontsize=8)
    train.save_figure(fig, workdir / "hidden_grad_norms.png")

    fig, ax = train.figure()
    base = init_model(init_key, "rnn", config.hidden_size)
    for gain in (0.5, 0.9, 1.0, 1.5, 2.0):
        cell_params = dataclasses.replace(base["cell"], w_h=gain * base["cell"].w_h)
        norms = grad_norms_in_float64("rnn", {**base, "cell": cell_params}, xs, targets)
        ax.plot(t, norms, label=f"‖W_hh‖ = {gain}")
    ax.set(
        xlabel="t",
        ylabel="mean ‖∂L/∂h_t‖",
        yscale="log",
        title="tanh RNN at initialisation, W_hh = gain * orthogonal",
    )
    ax.legend(fontsize=8)
    train.save_figure(fig, workdir / "rnn_gain.png")

    fig, ax = train.figure()
    for cell in trained:
        records = train.read_metrics(workdir / cell / "metrics.jsonl", split="train")
        steps = [r["step"] for r in records]
        ax.plot(
            steps,
            [r["grad_norm"] for r in records],
            "-",
            color=colors.get(cell),
            alpha=0.5,
            label=f"{cell} before clipping",
        )
        ax.plot(
            steps,
            [r["clipped_norm"] for r in records],
            ":",
            color=colors.get(cell),
            label=f"{cell} after",
        )
    ax.axhline(config.clip_norm, color="k", ls="--", lw=1, label="clip_norm")
    ax.set(
        xlabel="step",
        ylabel="global gradient norm (mean per log interval)",
        yscale="log",
        title="Gradient clipping",
    )
    ax.legend(fontsize=8)
    train.save_figure(fig, workdir / "clipping.png")


def main(argv=None) -> int:
    return train.run_main(
        Config, train_and_evaluate, argv, name="adding", config=CONFIG, description=__doc__
    )


if __name__ == "__main__":
    sys.exit(main())
