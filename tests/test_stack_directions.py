"""A bidirectional layer's two directions as one loop, against the two loops it replaces."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.extend import core as jax_core

import jaxrnn
from jaxrnn import _directions

D, H, T = 3, 4, 7


def close(a, b, tol):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x, np.float32), np.asarray(y, np.float32), tol, tol)


def scans(f):
    """How many ``lax.scan`` loops the traced ``f`` runs (nested ones included)."""

    def count(jaxpr):
        here = sum(eqn.primitive.name == "scan" for eqn in jaxpr.eqns)
        return here + sum(count(sub) for sub in jax_core.subjaxprs(jaxpr))

    return count(jax.make_jaxpr(f)().jaxpr)


def run_both(cell, batch, **options):
    """Values and gradients of the one-loop and the two-loop stack, on the same everything."""
    layers = jaxrnn.stack_init(
        jax.random.key(0), cell, D, H, num_layers=2, bidirectional=True,
        **({"reset_after": True} if cell == "gru" else {}),
    )  # fmt: skip
    xs = jax.random.normal(jax.random.key(1), (T, *batch, D))
    carry = jax.tree.map(
        lambda z: jax.random.normal(jax.random.key(2), z.shape),
        jaxrnn.initial_carry(layers, batch),
    )
    weights = jax.random.normal(jax.random.key(3), (T, *batch, 2 * H))

    def loss(one_loop, layers, xs, carry):
        final, ys = jaxrnn.stack_scan(cell, layers, xs, carry=carry, one_loop=one_loop, **options)
        value = jnp.sum(ys.astype(jnp.float32) * weights)
        value += sum(jnp.sum(jnp.sin(c.astype(jnp.float32))) for c in jax.tree.leaves(final))
        return value, (final, ys)

    grad = jax.value_and_grad(loss, argnums=(1, 2, 3), has_aux=True)
    return [jax.jit(grad, static_argnums=0)(one, layers, xs, carry) for one in (True, False)]


@pytest.mark.parametrize(
    "cell, batch",
    [("lstm", (5,)), pytest.param("gru", (2, 3), marks=pytest.mark.slow)],
)
def test_one_loop_equals_two_loops(cell, batch):
    """Lengths (0, short, T, beyond T), resets, both dropouts, a carry, any batch shape."""
    lengths = jnp.array([T, 3, 0, 9, 1, 5][: int(np.prod(batch))]).reshape(batch)
    resets = jax.random.bernoulli(jax.random.key(4), 0.25, (T, *batch))
    options = dict(lengths=lengths, resets=resets, dropout=0.3, recurrent_dropout=0.4)
    (one, g_one), (two, g_two) = run_both(cell, batch, key=jax.random.key(5), **options)
    close(one, two, 1e-6)  # values, final carries and outputs
    close(g_one, g_two, 2e-5)  # the weight gradients sum over time in the other order
    # The backward direction's final carry is the state after step 0.
    _, (final, _) = one
    assert final[1][1].h.shape == (*batch, H) if cell == "lstm" else final[1][1].shape
    assert not np.allclose(final[1][1].h if cell == "lstm" else final[1][1], 0)


@pytest.mark.slow
def test_one_loop_equals_two_loops_bfloat16_and_remat():
    lengths = jnp.array([T, 2, 5, 0])
    (one, g_one), (two, g_two) = run_both(
        "lstm", (4,), lengths=lengths, dtype=jnp.bfloat16, remat=True
    )
    close(one, two, 1e-2)
    close(g_one, g_two, 2e-2)
    assert jax.tree.leaves(one[1])[-1].dtype == jnp.bfloat16  # ys in the compute dtype


def test_one_loop_runs_one_loop_per_layer_and_falls_back():
    layers = jaxrnn.stack_init(jax.random.key(0), "gru", D, H, num_layers=2, bidirectional=True)
    xs = jnp.ones((T, 2, D))
    lengths = jnp.array([T, 3])

    def count(**options):
        return scans(lambda: jaxrnn.stack_scan("gru", layers, xs, lengths=lengths, **options))

    assert count(one_loop=False) == 2 * count()
    # What one loop cannot run keeps a loop per direction: a step without the
    # cell's rule, zoneout (a wrapped step).
    assert count(gradient="autodiff") == count(gradient="autodiff", one_loop=False)
    assert count(zoneout=0.2) == count(zoneout=0.2, one_loop=False)
    # Directions whose params differ in shape (a projected LSTM in one only) too.
    lstm = jaxrnn.stack_init(jax.random.key(0), "lstm", D, H, bidirectional=True)
    odd = ((lstm[0][0], jaxrnn.lstm_init(jax.random.key(1), D, H, proj_size=2)),)
    c = jaxrnn.initial_carry(odd, (2,))
    ys = jaxrnn.stack_scan("lstm", odd, xs, carry=c)[1]
    assert ys.shape == (T, 2, H + 2)
    assert not _directions.applies([jaxrnn._cell.bind("lstm", p) for p in odd[0]], odd[0], c[0])


def test_reverse_within_lengths():
    xs = jnp.arange(5 * 3, dtype=jnp.float32).reshape(5, 3, 1)
    lengths = jnp.array([5, 2, 0], jnp.int8)
    index = _directions.reversal(lengths, xs)
    got = np.asarray(_directions.reverse(xs, index))[..., 0]
    want = np.asarray(xs)[..., 0].copy()
    for b, n in enumerate([5, 2, 0]):
        want[:n, b] = want[:n, b][::-1]
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(_directions.reverse(jnp.asarray(got)[..., None], index), xs)
    np.testing.assert_array_equal(_directions.reverse(xs, None), xs[::-1])
    # Its gradient is the same gather (the permutation is its own inverse).
    w = jax.random.normal(jax.random.key(0), xs.shape)
    grad = jax.grad(lambda x: jnp.sum(_directions.reverse(x, index) * w))(xs)
    np.testing.assert_array_equal(grad, _directions.reverse(w, index))
