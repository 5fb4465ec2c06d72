"""What the tests share: the table of built-in cells and their variants, random inputs, references.

``CASES`` is the conformance table: every built-in cell with each declared
variant, its NumPy reference (``tests/reference.py``) and the shape of its
inputs. ``tests/conformance`` runs every generic check on every row; adding a
built-in cell means its module, its NumPy rendering and one row here.
"""

from __future__ import annotations

import dataclasses
import fcntl
import functools
import json
import os
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn
from tests import reference

ROOT = Path(__file__).resolve().parent.parent


@dataclasses.dataclass(frozen=True)
class Case:
    """One row of the conformance table."""

    cell: str  # the registered name
    reference: Callable  # the NumPy rendering of its step
    options: dict = dataclasses.field(default_factory=dict)  # init options of the variant
    spatial: tuple = ()  # spatial axes of one input, between batch and features (ConvLSTM)
    # A row that runs in the full suite only (marked slow): a variant whose options another
    # row covers in combination, or a cell outside the fast lane's classic and minimal ones
    # (ConvLSTM, xLSTM, the gated linear recurrences).
    variant: bool = False

    @property
    def step(self):
        return jaxrnn.get_cell(self.cell).step

    @property
    def masked(self) -> bool:
        """Whether the step takes a recurrent mask."""
        return "recurrent_mask" in jaxrnn.get_cell(self.cell).accepted_step_options

    @property
    def has_rule(self) -> bool:
        return jaxrnn.get_cell(self.cell).scan_rule is not None


P = 3  # the projection of the projected LSTM variants
CASES = {
    "rnn_tanh": Case("rnn", reference.rnn, {"activation": "tanh"}),
    "rnn_relu": Case("rnn", reference.rnn, {"activation": "relu"}, variant=True),
    "lstm": Case("lstm", reference.lstm),
    "lstm_proj": Case("lstm", reference.lstm, {"proj_size": P}, variant=True),
    "lstm_peephole": Case("lstm", reference.lstm, {"peephole": True}, variant=True),
    "lstm_layer_norm": Case("lstm", reference.lstm, {"layer_norm": True}, variant=True),
    "lstm_coupled": Case("lstm", reference.lstm, {"coupled": True}, variant=True),
    "lstm_clip": Case("lstm", reference.lstm, {"cell_clip": 0.5}, variant=True),
    "lstm_proj_peephole_clip": Case(
        "lstm", reference.lstm, {"proj_size": P, "peephole": True, "cell_clip": 0.4}, variant=True
    ),
    "lstm_all": Case(
        "lstm",
        reference.lstm,
        {"proj_size": P, "peephole": True, "layer_norm": True, "coupled": True, "cell_clip": 0.5},
        variant=True,
    ),
    "gru": Case("gru", reference.gru),
    "gru_reset_after": Case("gru", reference.gru, {"reset_after": True}, variant=True),
    "gru_layer_norm": Case("gru", reference.gru, {"layer_norm": True}, variant=True),
    "gru_layer_norm_reset_after": Case(
        "gru", reference.gru, {"layer_norm": True, "reset_after": True}, variant=True
    ),
    "mgu": Case("mgu", reference.mgu, variant=True),
    "mgu_no_reset_gate": Case("mgu", reference.mgu, {"reset_gate": False}, variant=True),
    "conv_lstm_1d": Case(
        "conv_lstm", reference.conv_lstm, {"kernel_size": (3,)}, (5,), variant=True
    ),
    "conv_lstm_2d_even": Case(
        "conv_lstm", reference.conv_lstm, {"kernel_size": (3, 2)}, (4, 3), variant=True
    ),
    "mingru": Case("mingru", reference.mingru),
    "minlstm": Case("minlstm", reference.minlstm),
    "slstm": Case("slstm", reference.slstm, {"num_heads": 2}, variant=True),
    "mlstm": Case("mlstm", reference.mlstm, {"num_heads": 2}, variant=True),
    "rglru": Case("rglru", reference.rglru, {"num_heads": 2}, variant=True),
    "s6": Case("s6", reference.s6, {"state_size": 3, "dt_rank": 2}, variant=True),
    "lru": Case("lru", reference.lru, {"state_size": 5}, variant=True),
    "hawk": Case("hawk", reference.hawk, {"lru_width": 4, "num_heads": 2}, variant=True),
}


#: The classic cells' rows, for tests of the scan and the stacks that need not see every cell.
CLASSIC = ("rnn_tanh", "rnn_relu", "lstm", "gru", "gru_reset_after")


def rows(cases=None):
    """The rows of ``cases`` (default: all) as pytest parameters, variants marked slow."""
    names = CASES if cases is None else cases
    return [
        pytest.param(name, marks=pytest.mark.slow) if CASES[name].variant else name
        for name in names
    ]


def fast_only(names, fast):
    """``names`` as pytest parameters, all but those in ``fast`` marked slow."""
    return [name if name in fast else pytest.param(name, marks=pytest.mark.slow) for name in names]


#: The classic cells that a generic test runs in the fast lane (one LSTM, one GRU).
FAST_CLASSIC = fast_only(CLASSIC, ("lstm", "gru_reset_after"))


def builtin_cells() -> set[str]:
    """The registered cells that jaxrnn itself defines (tests register their own too)."""
    return {
        name
        for name in jaxrnn.cell_names()
        if jaxrnn.get_cell(name).step.__module__.startswith("jaxrnn.cells.")
    }


# Random numbers ------------------------------------------------------------------------


def normal(seed, shape, dtype=jnp.float32, scale=1.0):
    """Random numbers from NumPy: no XLA compile per shape, as jax.random would cost."""
    return jnp.asarray(scale * np.random.default_rng(seed).normal(size=shape), dtype)


def random_like(shapes, seed=0):
    """Random arrays for every leaf of ``shapes`` (from ``jax.eval_shape``).

    Weights have variance 1/fan-in; vectors (biases, gains, peepholes) are
    distinct and random, so every one of them counts.
    """
    leaves, tree = jax.tree.flatten(shapes)
    return jax.tree.unflatten(
        tree,
        [
            normal(
                seed + k, a.shape, a.dtype, 0.3 if a.ndim == 1 else np.prod(a.shape[:-1]) ** -0.5
            )
            for k, a in enumerate(leaves)
        ],
    )


def make(case: str, d=4, h=6, *, seed=0, dtype=jnp.float32):
    """Random params of a case, with the structure its ``init`` gives."""
    c = CASES[case]
    init = jaxrnn.get_cell(c.cell).init
    shapes = jax.eval_shape(lambda k: init(k, d, h, dtype=dtype, **c.options), jax.random.key(0))
    return random_like(shapes, seed)


def random_carry(params, seed, batch_shape, scale=0.5):
    """A non-zero carry of ``params``' cell, so the recurrent path matters from step one."""
    zeros = jax.eval_shape(lambda: jaxrnn.initial_carry(params, batch_shape))
    leaves, tree = jax.tree.flatten(zeros)
    carry = jax.tree.unflatten(
        tree, [normal(seed + k, a.shape, a.dtype, scale) for k, a in enumerate(leaves)]
    )
    if isinstance(carry, jaxrnn.SLSTMState):  # a normaliser the cell can reach: N >= 1
        carry = carry._replace(n=1 + jnp.abs(carry.n))
    return carry


def binary_mask(seed, shape, dtype=jnp.float32):
    """A recurrent mask of 0s and 2s (dropout at rate 0.5)."""
    return jnp.asarray(2.0 * (np.random.default_rng(seed).random(shape) < 0.5), dtype)


def numpy_carry(carry):
    """A carry as the NumPy references take it: an array, or a tuple (``(h, c)``, ...)."""
    if isinstance(carry, tuple):  # LSTMState, SLSTMState, SegmentState, ...
        return tuple(np.asarray(a) for a in carry)
    return np.asarray(carry)


def per_position(a, spatial):
    """A per-sequence array ``a (..., *batch)`` broadcast over trailing ``spatial`` axes."""
    a = np.asarray(a)
    return jnp.asarray(np.broadcast_to(a.reshape(a.shape + (1,) * len(spatial)), a.shape + spatial))


# The documented loop, and comparisons ---------------------------------------------------


def reference_scan(step, params, xs, *, carry, lengths=None, resets=None, reverse=False):
    """The loop in ``jaxrnn.scan``'s docstring, as ``lax.scan`` of the step."""
    batch = xs.shape[1:-1]
    carry0 = carry
    keep = None
    if lengths is not None:
        keep = jnp.arange(xs.shape[0]).reshape((-1,) + (1,) * len(batch)) < lengths[None]

    def expand(mask, leaf):
        return mask.reshape(mask.shape + (1,) * (leaf.ndim - mask.ndim))

    def body(carry, inputs):
        x, k, r = inputs
        if r is not None:
            if k is not None:
                r = r & k  # a padded step does nothing, a reset included
            carry = jax.tree.map(lambda a, b: jnp.where(expand(r, a), a, b), carry0, carry)
        new, y = functools.partial(step, params)(carry, x)
        if k is not None:
            new = jax.tree.map(lambda a, b: jnp.where(expand(k, a), a, b), new, carry)
            y = jnp.where(expand(k, y), y, 0)
        return new, y

    return jax.lax.scan(body, carry, (xs, keep, resets), reverse=reverse)


def loss_weights(ys, carry, key=4):
    """A loss that weighs every output and carry element differently."""
    leaves = [ys, *jax.tree.leaves(carry)]
    keys = jax.random.split(jax.random.key(key), len(leaves))
    weights = [jax.random.normal(k, a.shape, a.dtype) for k, a in zip(keys, leaves, strict=True)]
    return sum(jnp.sum(w * a) for w, a in zip(weights, leaves, strict=True))


def outputs_and_grads(run, params, carry, xs):
    """``run(params, carry, xs) -> (final, ys)`` and the gradients of :func:`loss_weights`."""

    def loss(params, carry, xs):
        final, ys = run(params, carry, xs)
        return loss_weights(ys, final), (final, ys)

    grads, outputs = jax.grad(loss, (0, 1, 2), has_aux=True)(params, carry, xs)
    return outputs, grads


def tree_close(a, b, rtol, atol):
    """Same structure, same dtypes, values close."""
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        assert x.dtype == y.dtype
        np.testing.assert_allclose(
            np.asarray(x, np.float32), np.asarray(y, np.float32), rtol=rtol, atol=atol
        )


def close(a, b, tol=1e-5):
    """Every leaf of ``a`` close to the same leaf of ``b`` (NumPy or JAX)."""
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=tol, atol=tol)


#: Compiling is most of these small tests' time, and LLVM's optimisations most of
#: compiling; they change no result that a test compares (both sides compile alike).
fast_jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})


# The README and the docs ---------------------------------------------------------------------

DOCS = ROOT / "docs"


def markdown_blocks(path: Path) -> dict[str, list[str]]:
    """A Markdown page's ```python blocks by the ``##`` section they stand in, in order.

    The blocks of one section run in order in one namespace, as a reader runs them.
    """
    sections, heading, block = {}, "", None
    for line in path.read_text().splitlines(keepends=True):
        if block is not None:
            if line.startswith("```"):
                sections.setdefault(heading, []).append("".join(block))
                block = None
            else:
                block.append(line)
        elif line.startswith("```python"):
            block = []
        elif line.startswith("## "):
            heading = line[3:].strip()
    return sections


def readme_blocks() -> dict[str, list[str]]:
    """The README's ```python blocks by section."""
    return markdown_blocks(ROOT / "README.md")


def docs_pages() -> list[Path]:
    """The site's Markdown pages that hold ```python blocks."""
    return [p for p in sorted(DOCS.rglob("*.md")) if "_build" not in p.parts and page_blocks(p)]


def page_blocks(path: Path) -> list[str]:
    """All of a page's ```python blocks in order: a page runs top to bottom in one namespace."""
    return [b for blocks in markdown_blocks(path).values() for b in blocks]


# Worker processes -------------------------------------------------------------------------


def once(tmp_path_factory, name, make) -> Path:
    """The directory where ``make(directory)`` ran, once per test session (across xdist
    workers, and however often a fixture is set up again); ``make`` writes ``report.json``
    there, or the failure it met is written there."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # shared by the workers of one session
    directory = root / name
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (directory / "report.json").exists():
            directory.mkdir(exist_ok=True)
            try:
                make(directory)
            except Exception as error:
                (directory / "report.json").write_text(json.dumps({"failure": str(error)}))
    report = json.loads((directory / "report.json").read_text())
    assert "failure" not in report, report.get("failure")
    return directory
