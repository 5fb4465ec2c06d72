"""Property-based: ``jaxrnn.scan`` against a plain Python loop of the step, on drawn inputs.

For every built-in cell (each row of ``tests.helpers.CASES`` may be drawn),
Hypothesis draws the length of time (0 to 24), the batch shape (rank 0 to 2),
lengths (0, T, beyond T, negative) in narrow and wide integer dtypes, resets,
direction, remat and the gradient path. The reference is the loop written in
``jaxrnn.scan``'s docstring, step by step in Python, differentiated by JAX; it
shares nothing with the library's masking.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import jaxrnn
from tests.helpers import CASES, builtin_cells, make, per_position, random_carry

D, H = 2, 4
LENGTH_DTYPES = (jnp.int8, jnp.int16, jnp.int32, jnp.uint8)


def _select(mask, a, b):
    def leaf(x, y):
        return jnp.where(mask.reshape(mask.shape + (1,) * (x.ndim - mask.ndim)), x, y)

    return jax.tree.map(leaf, a, b)


def python_loop(step, params, xs, carry, lengths, resets, reverse, out):
    """The docstring's loop, one step at a time, per sequence through ``where``."""
    batch = xs.shape[1:-1]
    carry0, ys = carry, [None] * xs.shape[0]
    order = range(xs.shape[0] - 1, -1, -1) if reverse else range(xs.shape[0])
    for t in order:
        valid = jnp.ones(batch, bool) if lengths is None else t < lengths.astype(jnp.int32)
        start = carry
        if resets is not None:
            reset = resets[t] & valid
            start = _select(reset, carry0, carry)
        new, y = step(params, start, _select(valid, xs[t], jnp.zeros_like(xs[t])))
        carry = _select(valid, new, carry)
        ys[t] = _select(valid, y, jnp.zeros_like(y))
    if not ys:
        return carry, jnp.zeros((0, *batch, out), xs.dtype)
    return carry, jnp.stack(ys)


@st.composite
def cases(draw, cell):
    steps = draw(st.integers(0, 24))
    batch = tuple(draw(st.lists(st.integers(1, 3), min_size=0, max_size=2)))
    size = int(np.prod(batch))
    lengths = None
    if batch and draw(st.booleans()):
        dtype = draw(st.sampled_from(LENGTH_DTYPES))
        top = min(int(jnp.iinfo(dtype).max), steps + 5)
        low = 0 if dtype == jnp.uint8 else -2
        values = draw(st.lists(st.integers(low, top), min_size=size, max_size=size))
        lengths = np.array(values).reshape(batch).astype(dtype)
    resets = None
    if draw(st.booleans()):
        flags = draw(st.lists(st.booleans(), min_size=steps * size, max_size=steps * size))
        resets = np.array(flags, bool).reshape((steps, *batch))
    return {
        "row": draw(st.sampled_from([k for k, c in CASES.items() if c.cell == cell])),
        "steps": steps,
        "batch": batch,
        "lengths": lengths,
        "resets": resets,
        "reverse": draw(st.booleans()),
        "remat": draw(st.booleans()),
        "gradient": draw(st.sampled_from(("auto", "autodiff"))),
        "seed": draw(st.integers(0, 2**16)),
    }


@pytest.mark.slow
@pytest.mark.parametrize("cell", sorted(builtin_cells()))
@settings(
    max_examples=1,  # one drawn case per cell (13 cells): the table's rows cover the rest
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_scan_equals_a_python_loop_of_the_step(cell, data):
    case = data.draw(cases(cell))
    row = CASES[case["row"]]
    out = row.options.get("proj_size", H)
    key = jax.random.key(case["seed"])
    params, step = make(case["row"], D, H, seed=case["seed"]), row.step
    shape = (*case["batch"], *row.spatial)
    xs = jax.random.normal(jax.random.fold_in(key, 1), (case["steps"], *shape, D))
    carry = random_carry(params, case["seed"] + 2, shape)
    lengths = None if case["lengths"] is None else per_position(case["lengths"], row.spatial)
    resets = None if case["resets"] is None else per_position(case["resets"], row.spatial)
    weights = jax.random.normal(jax.random.fold_in(key, 3), (case["steps"], *shape, out))

    def loss(run):
        def f(params, carry, xs):
            final, ys = run(params, carry, xs)
            return jnp.sum(weights * jnp.tanh(ys)) + sum(
                jnp.sum(c * c) for c in jax.tree.leaves(final)
            ), (final, ys)

        return jax.value_and_grad(f, (0, 1, 2), has_aux=True)(params, carry, xs)

    got = loss(
        lambda p, c, x: jaxrnn.scan(
            step,
            p,
            x,
            carry=c,
            lengths=lengths,
            resets=resets,
            reverse=case["reverse"],
            remat=case["remat"],
            gradient=case["gradient"],
        )
    )
    want = loss(lambda p, c, x: python_loop(step, p, x, c, lengths, resets, case["reverse"], out))
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-5, atol=2e-5)
