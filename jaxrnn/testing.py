"""Checks for a cell of your own: the generic part of the suite that every built-in cell passes.

:func:`check_cell` runs a :class:`jaxrnn.Cell` (registered or not) through the
checks that jaxrnn's own conformance suite runs on each built-in cell, on
small random inputs, and raises an ``AssertionError`` that names the first
check that fails. Use it in your tests::

    def test_my_cell():
        jaxrnn.testing.check_cell(my_cell, reference_step=my_numpy_step)
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxrnn._cell import Cell, get_cell
from jaxrnn._scan import scan
from jaxrnn._stack import stack_init, stack_scan

__all__ = ["check_cell"]

#: These small programs compile several times faster without LLVM's optimisations,
#: which change no result that a check compares (both sides are compiled alike).
_jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})


def check_cell(
    cell: Cell | str,
    *,
    reference_step: Callable | None = None,
    input_size: int = 3,
    hidden_size: int = 4,
    spatial: Sequence[int] = (),
    options: dict | None = None,
    modules: bool = True,
    seed: int = 0,
    rtol: float = 1e-5,
    atol: float = 1e-5,
) -> None:
    """Runs jaxrnn's generic checks on ``cell``; an ``AssertionError`` names the first failure.

    On random params (``cell.init`` with every vector, such as a bias, drawn at
    random too, so that each one matters) and a random carry, in float32:

    1. **The carry.** ``cell.initial_carry`` gives zeros with the structure,
       shapes and dtypes that ``cell.step`` returns, and the hidden state
       (:attr:`jaxrnn.Cell.hidden`) has the shape of the step's output.
    2. **The equations.** With ``reference_step``, an implementation of your
       own (NumPy, say) ``reference_step(params, carry, x) -> (carry, y)``
       taking and giving NumPy arrays (a carry as the same pytree), three
       steps from a random carry equal it.
    3. **The scan.** :func:`jaxrnn.scan` with lengths (one full, one 0, one in
       the middle, one beyond ``T``), resets (on padded steps too), both
       directions and remat equals a plain Python loop of the step (the loop in
       its docstring), in values and in gradients with respect to the params,
       the carry and the inputs. A cell with a scan rule must run it
       (``gradient="rule"``): this holds the rule to the step.
    4. **Padding.** NaN and Inf past each length change neither values nor
       gradients.
    5. **Stacks.** A two-layer bidirectional :func:`jaxrnn.stack_scan` equals
       its layers run one by one with :func:`jaxrnn.scan`.
    6. **Modules** (``modules=True``): ``jaxrnn.nnx.Recurrent`` and
       ``jaxrnn.linen.Recurrent`` built from the cell value equal the stack.

    Args:
        cell: a :class:`jaxrnn.Cell` or a registered name.
        reference_step: optional independent step to hold the cell's to.
        input_size, hidden_size: the sizes given to ``cell.init``.
        spatial: for a cell with spatial inputs (several
            :attr:`jaxrnn.Cell.feature_axes`): their sizes, between the batch
            axis and the features.
        options: keyword options for ``cell.init``.
        modules: also check the Flax modules.
        seed: for the random numbers.
        rtol, atol: the tolerance on values; gradients get ten times ``rtol``.

    Example, in a test of your own (``tests/test_registry.py`` runs the cell of the
    guide on writing your own cell through it)::

        jaxrnn.testing.check_cell(my_cell, reference_step=my_numpy_step, spatial=(8, 8))
    """
    cell = get_cell(cell)
    spatial = tuple(spatial)
    rng = np.random.default_rng(seed)
    params = _random_params(cell, rng, input_size, hidden_size, options or {})
    batch = (3,)
    shape = (*batch, *spatial)
    xs = _normal(rng, (7, *shape, input_size))
    carry = _random_carry(cell, params, rng, shape)
    lengths = _per_position(np.array([7, 0, 4]), spatial)
    resets = _per_position(rng.random((7, *batch)) < 0.25, spatial)
    tolerance = {"rtol": rtol, "atol": atol}

    _check_carry(cell, params, carry, xs[0])
    if reference_step is not None:
        _check_equations(cell, reference_step, params, carry, xs, tolerance)
    gradient = "rule" if cell.scan_rule is not None else "auto"
    runs = [
        {"lengths": lengths, "resets": resets},
        {"lengths": lengths, "resets": resets, "reverse": True},
        {"lengths": lengths, "reverse": True, "remat": True},
        {},
    ]
    _check_scan(cell, params, carry, xs, runs, gradient, rtol, atol)
    _check_padding(cell, params, xs, lengths, gradient)
    _check_stack(cell, rng, input_size, hidden_size, options or {}, xs, lengths, modules, atol)


# The checks ------------------------------------------------------------------------------


def _check_carry(cell, params, carry, x):
    zeros = cell.initial_carry(params, x.shape[:-1])
    _assert(
        all(not np.asarray(a).any() for a in jax.tree.leaves(zeros)),
        "initial_carry: expected zeros",
    )
    new, y = jax.eval_shape(cell.step, params, zeros, x)
    _assert(
        jax.tree.structure(new) == jax.tree.structure(zeros),
        f"initial_carry: expected the structure the step returns, {jax.tree.structure(new)}, "
        f"got {jax.tree.structure(zeros)}",
    )
    for a, b in zip(jax.tree.leaves(new), jax.tree.leaves(zeros), strict=True):
        _assert(
            (a.shape, a.dtype) == (b.shape, b.dtype),
            f"initial_carry: a leaf of {b.shape} {b.dtype}, but the step returns "
            f"{a.shape} {a.dtype}",
        )
    hidden = cell.hidden_state(zeros)
    _assert(
        hidden.shape == y.shape,
        f"Cell.hidden: the hidden state has shape {hidden.shape} but the output {y.shape}",
    )


def _check_equations(cell, reference_step, params, carry, xs, tolerance):
    want = jax.tree.map(np.asarray, carry)
    step = _jit(cell.step)
    for t, x in enumerate(xs[:3]):
        carry, y = step(params, carry, x)
        want, want_y = reference_step(params, want, np.asarray(x))
        _close(y, want_y, f"step {t}: the output against reference_step", tolerance)
        _close(carry, want, f"step {t}: the carry against reference_step", tolerance)


def _check_scan(cell, params, carry, xs, runs, gradient, rtol, atol):
    """Every run of ``runs`` (scan options) against the loop, in one program per side."""

    def loss(run, options):
        def f(params, carry, xs):
            final, ys = run(params, carry, xs, options)
            weights = jnp.cos(jnp.arange(ys.size, dtype=ys.dtype)).reshape(ys.shape)
            total = jnp.sum(weights * ys) + sum(jnp.sum(a * a) for a in jax.tree.leaves(final))
            return total, (final, ys)

        return jax.value_and_grad(f, (0, 1, 2), has_aux=True)(params, carry, xs)

    def scanned(p, c, x, options):
        return scan(cell, p, x, carry=c, gradient=gradient, **options)

    def looped(p, c, x, options):
        options = {k: v for k, v in options.items() if k != "remat"}
        return _documented_loop(cell.step, p, x, c, **options)

    got = _jit(lambda: [loss(scanned, options) for options in runs])()
    want = _jit(lambda: [loss(looped, options) for options in runs])()
    for options, ((_, got_out), got_grads), ((_, want_out), want_grads) in zip(
        runs, got, want, strict=True
    ):
        what = f"jaxrnn.scan with {', '.join(options) or 'no options'} against its loop"
        _close(got_out, want_out, what + ": values", {"rtol": rtol, "atol": atol})
        _close(got_grads, want_grads, what + ": gradients", {"rtol": 10 * rtol, "atol": atol})


def _check_padding(cell, params, xs, lengths, gradient):
    dirty = xs.at[4:, 2].set(jnp.nan).at[:, 1].set(jnp.inf)

    @_jit
    def run(xs):
        def loss(params, xs):
            final, ys = scan(cell, params, xs, lengths=lengths, gradient=gradient)
            return jnp.sum(ys**2) + sum(jnp.sum(a) for a in jax.tree.leaves(final))

        return jax.value_and_grad(loss, (0, 1))(params, xs)

    got, want = run(dirty), run(xs)
    _assert(
        all(np.isfinite(np.asarray(a)).all() for a in jax.tree.leaves(got)),
        "padding: NaN or Inf past a length reached a value or a gradient",
    )
    _close(got, want, "padding: NaN past a length changed a value", {"rtol": 0, "atol": 0})


def _check_stack(cell, rng, input_size, hidden_size, options, xs, lengths, modules, atol):
    layers = stack_init(
        jax.random.key(0), cell, input_size, hidden_size, num_layers=2, bidirectional=True,
        **options,
    )  # fmt: skip
    layers = jax.tree.map(lambda a: a + _normal(rng, a.shape, a.dtype, 0.1), layers)
    final, ys = _jit(lambda layers: stack_scan(cell, layers, xs, lengths=lengths))(layers)
    inputs, finals = xs, []
    for layer in layers:
        fwd = scan(cell, layer[0], inputs, lengths=lengths)
        bwd = scan(cell, layer[1], inputs, lengths=lengths, reverse=True)
        finals.append((fwd[0], bwd[0]))
        inputs = jnp.concatenate([fwd[1], bwd[1]], axis=-1)
    tolerance = {"rtol": 1e-5, "atol": atol}
    _close((final, ys), (tuple(finals), inputs), "stack_scan against its layers", tolerance)
    if not modules:
        return
    from jaxrnn import linen, nnx  # Flax, on first use

    batch_major = jnp.swapaxes(xs, 0, 1)  # (B, T, *spatial, d)
    per_sequence = lengths.reshape(lengths.shape[0], -1)[:, 0]
    want = jnp.swapaxes(ys, 0, 1)
    got = nnx.Recurrent(cell, None, None, layers=layers)(batch_major, lengths=per_sequence)
    _close(got, want, "jaxrnn.nnx.Recurrent of the cell against stack_scan", tolerance)
    module = linen.Recurrent(
        hidden_size, cell=cell, cell_options=options, bidirectional=True, num_layers=2
    )
    got = module.apply(module.variables_from_layers(layers), batch_major, lengths=per_sequence)
    _close(got, want, "jaxrnn.linen.Recurrent of the cell against stack_scan", tolerance)


# The reference: the plain loop of jaxrnn.scan's docstring --------------------------------


def _documented_loop(step, params, xs, carry, *, lengths=None, resets=None, reverse=False):
    """``jaxrnn.scan``'s docstring as written: a Python loop, masked by ``where``."""
    carry0, ys = carry, [None] * xs.shape[0]
    batch = xs.shape[1:-1]
    for t in reversed(range(xs.shape[0])) if reverse else range(xs.shape[0]):
        valid = jnp.ones(batch, bool) if lengths is None else t < lengths
        if resets is not None:
            carry = _where(resets[t] & valid, carry0, carry)
        new, y = step(params, carry, jnp.where(_expand(valid, xs[t]), xs[t], 0))
        carry = _where(valid, new, carry)
        ys[t] = _where(valid, y, jax.tree.map(jnp.zeros_like, y))
    return carry, jnp.stack(ys)


def _expand(mask, leaf):
    return mask.reshape(mask.shape + (1,) * (leaf.ndim - mask.ndim))


def _where(mask, a, b):
    return jax.tree.map(lambda x, y: jnp.where(_expand(mask, x), x, y), a, b)


# Random numbers and comparisons ----------------------------------------------------------


def _normal(rng, shape, dtype=jnp.float32, scale=1.0):
    return jnp.asarray(scale * rng.normal(size=shape), dtype)


def _random_params(cell, rng, input_size, hidden_size, options):
    params = cell.init(jax.random.key(int(rng.integers(2**31))), input_size, hidden_size, **options)
    return jax.tree.map(
        lambda a: a + _normal(rng, a.shape, a.dtype, 0.3) if a.ndim <= 1 else a, params
    )


def _random_carry(cell, params, rng, shape):
    zeros = cell.initial_carry(params, shape)
    return jax.tree.map(lambda a: _normal(rng, a.shape, a.dtype, 0.5), zeros)


def _per_position(a, spatial):
    return jnp.asarray(np.broadcast_to(a.reshape(a.shape + (1,) * len(spatial)), a.shape + spatial))


def _assert(ok, message):
    if not ok:
        raise AssertionError(message)


def _close(got, want, what, tolerance):
    got_leaves, want_leaves = jax.tree.leaves(got), jax.tree.leaves(want)
    _assert(
        len(got_leaves) == len(want_leaves),
        f"{what}: {len(got_leaves)} arrays against {len(want_leaves)}",
    )
    for a, b in zip(got_leaves, want_leaves, strict=True):
        try:
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), **tolerance)
        except AssertionError as error:
            raise AssertionError(f"{what}:{error}") from None
