"""Batching and long sequences of the classic cells, and the init scheme.

Each cell's equations are held to NumPy in ``tests/conformance``.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn
from tests.helpers import CASES, FAST_CLASSIC, make

D, H = 5, 7


@pytest.mark.parametrize("name", FAST_CLASSIC)
def test_vmap_over_sequences_equals_batched_call(name):
    params, step = make(name, D, H, seed=5), CASES[name].step
    xs = jax.random.normal(jax.random.key(6), (4, 9, D))  # (B, T, d), batch-major for vmap

    def one(seq):
        return jaxrnn.scan(step, params, seq)

    carry_v, ys_v = jax.vmap(one)(xs)
    carry_b, ys_b = jaxrnn.scan(step, params, jnp.swapaxes(xs, 0, 1))
    np.testing.assert_allclose(ys_v, jnp.swapaxes(ys_b, 0, 1), rtol=1e-6, atol=1e-6)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6), carry_v, carry_b
    )


@pytest.mark.parametrize("name", FAST_CLASSIC)
def test_long_sequences_with_large_inputs_stay_finite(name):
    params, step = make(name, D, H, seed=9), CASES[name].step
    xs = 100.0 * jax.random.normal(jax.random.key(10), (5000, 2, D))
    _carry, ys = jax.jit(functools.partial(jaxrnn.scan, step))(params, xs)
    assert bool(jnp.isfinite(ys).all())
    grads = jax.grad(lambda p: jaxrnn.scan(step, p, xs[:2000] / 100)[1].sum())(params)
    assert all(bool(jnp.isfinite(g).all()) for g in jax.tree.leaves(grads))


@pytest.mark.parametrize(
    ("init", "gates"), [(jaxrnn.rnn_init, 1), (jaxrnn.lstm_init, 4), (jaxrnn.gru_init, 3)]
)
def test_init_scheme(init, gates):
    d, h = 64, 32
    params = init(jax.random.key(11), d, h)
    assert params.w_x.shape == (d, gates * h)
    assert params.w_h.shape == (h, gates * h)
    # Recurrent weights: each gate's block is orthogonal, and the blocks differ.
    blocks = np.split(np.asarray(params.w_h), gates, axis=1)
    for block in blocks:
        np.testing.assert_allclose(block.T @ block, np.eye(h), atol=1e-5)
    if gates > 1:
        assert not np.allclose(blocks[0], blocks[1])
    # Input weights: variance 1/fan_in.
    assert abs(np.var(np.asarray(params.w_x)) * d - 1.0) < 0.15
    biases = [a for a in jax.tree.leaves(params) if a.ndim == 1]
    if init is jaxrnn.lstm_init:
        (b,) = biases
        np.testing.assert_array_equal(
            b.reshape(4, h), np.array([[0.0], [1.0], [0.0], [0.0]]) * np.ones(h)
        )
        b2 = jaxrnn.lstm_init(jax.random.key(11), d, h, forget_bias=0.0).b
        np.testing.assert_array_equal(b2, 0.0)
    else:
        for b in biases:
            np.testing.assert_array_equal(b, 0.0)


def test_init_is_deterministic_and_key_dependent():
    a = jaxrnn.lstm_init(jax.random.key(0), 3, 4)
    b = jaxrnn.lstm_init(jax.random.key(0), 3, 4)
    c = jaxrnn.lstm_init(jax.random.key(1), 3, 4)
    np.testing.assert_array_equal(a.w_h, b.w_h)
    assert not np.allclose(a.w_h, c.w_h)


def test_params_are_pytrees_with_static_variants():
    p = jaxrnn.gru_init(jax.random.key(0), 3, 4, reset_after=True)
    assert len(jax.tree.leaves(p)) == 4
    q = jax.tree.map(lambda a: a * 2, p)
    assert isinstance(q, jaxrnn.GRUParams) and q.reset_after is True
    r = jaxrnn.rnn_init(jax.random.key(0), 3, 4, activation="relu")
    grads = jax.grad(lambda p: jaxrnn.rnn_step(p, jnp.zeros(4), jnp.ones(3))[1].sum())(r)
    assert isinstance(grads, jaxrnn.RNNParams) and grads.activation == "relu"
    # Constructible by keyword and positionally, as documented.
    s = jaxrnn.RNNParams(w_x=r.w_x, w_h=r.w_h, b=r.b, activation="relu")
    assert jax.tree.structure(s) == jax.tree.structure(r)
    assert jax.tree.structure(s) != jax.tree.structure(jaxrnn.RNNParams(r.w_x, r.w_h, r.b))
    # Changing the variant retraces rather than reusing the other variant's program.
    tanh = jaxrnn.RNNParams(r.w_x, r.w_h, r.b)
    f = jax.jit(lambda p: jaxrnn.rnn_step(p, jnp.zeros(4), -jnp.ones(3))[1])
    assert not np.allclose(f(r), f(tanh))


def test_lstm_state_is_named():
    p = jaxrnn.lstm_init(jax.random.key(0), 3, 4)
    carry = jaxrnn.initial_carry(p, (2,))
    assert isinstance(carry, jaxrnn.LSTMState)
    carry, y = jaxrnn.lstm_step(p, carry, jnp.ones((2, 3)))
    np.testing.assert_array_equal(carry.h, y)
    assert carry.c.shape == (2, 4)
