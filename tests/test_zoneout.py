"""Zoneout in stack_scan and the layers: sampled masks in training, their expectation in evaluation.

Each unit of every carry leaf keeps its previous value with probability p (Krueger
et al. 2017), with masks of their own for ``h`` and ``c``. The tests read the
masks back from the outputs (a kept unit equals its previous value exactly),
and hold evaluation to a NumPy loop of ``p * old + (1 - p) * new``.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jaxrnn
from tests import reference
from tests.helpers import normal, random_like

D, H = 3, 8


def layers_of(init, d=D, h=H, **kwargs):
    shapes = jax.eval_shape(lambda k: jaxrnn.stack_init(k, init, d, h, **kwargs), jax.random.key(0))
    return random_like(shapes)


def test_training_rate_and_separate_masks_for_h_and_c():
    p, batch = 0.3, 2000
    layers = layers_of(jaxrnn.lstm_init)
    c0 = jaxrnn.LSTMState(normal(1, (batch, H)), normal(2, (batch, H)))
    x = normal(3, (1, batch, D))
    run = jax.jit(functools.partial(jaxrnn.stack_scan, jaxrnn.lstm_step, zoneout=p))
    carry, ys = run(layers, x, carry=((c0,),), key=jax.random.key(0))
    (final,) = carry[0]
    fresh, _ = jaxrnn.lstm_step(layers[0][0], c0, x[0])
    kept = {}
    for leaf in ("h", "c"):
        got, old, new = (np.asarray(getattr(s, leaf)) for s in (final, c0, fresh))
        kept[leaf] = got == old
        # Every unit is either its old value or the cell's new one.
        np.testing.assert_allclose(np.where(kept[leaf], new, got), new, rtol=1e-6, atol=1e-6)
        assert abs(kept[leaf].mean() - p) < 0.015  # 16,000 units: std 0.004
    # Separate masks: both kept with probability p^2, not p.
    assert abs((kept["h"] & kept["c"]).mean() - p * p) < 0.01
    np.testing.assert_array_equal(ys[0], final.h)


def test_masks_are_fresh_at_every_step_and_for_every_sequence():
    p = 0.5
    layers = layers_of(jaxrnn.gru_init)
    xs = normal(4, (40, 32, D))
    run = jax.jit(functools.partial(jaxrnn.stack_scan, jaxrnn.gru_step, zoneout=p))
    _, ys = run(layers, xs, key=jax.random.key(1))
    ys = np.asarray(ys)
    kept = ys[1:] == ys[:-1]  # (T - 1, B, h)
    assert abs(kept.mean() - p) < 0.03
    assert abs((kept[1:] == kept[:-1]).mean() - 0.5) < 0.03  # not one mask for all steps
    assert abs((kept[:, 1:] == kept[:, :-1]).mean() - 0.5) < 0.03  # nor for all sequences
    # The other units hold the cell's new value, computed from the zoned state.
    fresh = np.asarray(jax.jit(jaxrnn.gru_step)(layers[0][0], ys[:-1], xs[1:])[0])
    np.testing.assert_allclose(ys[1:][~kept], fresh[~kept], rtol=1e-5, atol=1e-6)


@pytest.mark.slow  # the fast lane's time: see README
def test_training_with_lengths_both_directions_and_remat():
    layers = layers_of(jaxrnn.gru_init, bidirectional=True)
    xs = normal(5, (6, 3, D))
    lengths = jnp.array([6, 2, 0])

    def run(layers, key, remat=False):
        return jaxrnn.stack_scan(
            jaxrnn.gru_step, layers, xs, lengths=lengths, zoneout=0.4, key=key, remat=remat
        )

    carry, ys = jax.jit(run)(layers, jax.random.key(2))
    np.testing.assert_array_equal(ys[2:, 1], 0.0)
    np.testing.assert_array_equal(ys[:, 2], 0.0)
    # The carry and the output are one value, which XLA may compute twice (once in each
    # fused loop body), rounding each copy its own way: equal to an ulp.
    close_trees(carry[0][0][1], ys[1, 1, :H], 1e-6)  # after the last valid step
    close_trees(carry[0][1][1], ys[0, 1, H:], 1e-6)  # backward ends at step 0
    # The key alone decides the masks; remat changes neither values nor gradients.
    close_trees(jax.jit(run)(layers, jax.random.key(2)), (carry, ys))
    assert not np.allclose(jax.jit(run)(layers, jax.random.key(3))[1], ys)

    def loss(layers, remat):
        return jnp.sum(run(layers, jax.random.key(2), remat)[1] ** 2)

    grad = jax.jit(jax.grad(loss), static_argnums=1)
    close_trees(grad(layers, True), grad(layers, False), 1e-5)
    assert all(bool(jnp.isfinite(g).all()) for g in jax.tree.leaves(grad(layers, False)))


def close_trees(a, b, tol=0.0):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=tol, atol=tol)


def zoned(cell, p):
    """A NumPy cell with zoneout's expectation on every carry leaf."""

    def step(params, carry, x):
        new, _ = cell(params, carry, x)
        if isinstance(new, tuple):
            carry = tuple(p * old + (1 - p) * n for old, n in zip(carry, new, strict=True))
            return carry, carry[0]
        carry = p * carry + (1 - p) * new
        return carry, carry

    return step


def test_evaluation_is_the_expectation():
    p = 0.25
    layers = layers_of(jaxrnn.gru_init, num_layers=2, bidirectional=True)
    xs = normal(6, (5, 3, D))
    lengths = np.array([5, 3, 1])
    carry, ys = jax.jit(functools.partial(jaxrnn.stack_scan, jaxrnn.gru_step, zoneout=p))(
        layers, xs, lengths=lengths
    )
    want_carry, want = reference.stack(
        zoned(reference.gru, p), layers, xs, lengths, lambda _: np.zeros(H)
    )
    np.testing.assert_allclose(ys, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(carry[1][1], np.stack(want_carry[1][1]), rtol=1e-5, atol=1e-6)
    # The LSTM's memory cell too.
    (params,) = layers_of(jaxrnn.lstm_init)[0]
    c0 = jaxrnn.LSTMState(normal(7, (3, H)), normal(8, (3, H)))
    carry, ys = jaxrnn.stack_scan(jaxrnn.lstm_step, ((params,),), xs, carry=((c0,),), zoneout=p)
    want_carry, want = reference.run(
        zoned(reference.lstm, p), params, (np.asarray(c0.h), np.asarray(c0.c)), np.asarray(xs)
    )
    np.testing.assert_allclose(ys, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(carry[0][0].c, want_carry[1], rtol=1e-5, atol=1e-6)


def test_fused_gradient_stays_without_zoneout():
    layers = layers_of(jaxrnn.lstm_init)
    xs = jnp.ones((4, 2, D))

    def program(zoneout, key):
        def run(layers):
            return jaxrnn.stack_scan(
                jaxrnn.lstm_step, layers, xs, zoneout=zoneout, key=key, recurrent_dropout=0.1
            )

        return str(jax.make_jaxpr(run)(layers))

    assert "custom_vjp" in program(0.0, jax.random.key(0))
    assert "custom_vjp" not in program(0.2, jax.random.key(0))
    assert "custom_vjp" not in program(0.2, None)


def test_layers_sample_in_training_and_take_the_expectation_in_evaluation():
    x = normal(9, (2, 5, D))  # (B, T, d)
    model = jaxrnn.nnx.Recurrent("gru", D, H, zoneout=0.3, rngs=nnx.Rngs(0))
    layers = model.to_layers()
    expected = jaxrnn.stack_scan(jaxrnn.gru_step, layers, jnp.moveaxis(x, 1, 0), zoneout=0.3)[1]
    with pytest.raises(ValueError, match=r"rngs: dropout=0.0, recurrent_dropout=0.0 and zoneout="):
        model(x)
    sampled = model(x, rngs=nnx.Rngs(dropout=1))
    want = jaxrnn.stack_scan(
        jaxrnn.gru_step,
        layers,
        jnp.moveaxis(x, 1, 0),
        zoneout=0.3,
        key=nnx.Rngs(dropout=1).dropout(),
    )[1]
    close_trees(sampled, jnp.moveaxis(want, 0, 1), 1e-6)
    model.eval()
    close_trees(model(x), jnp.moveaxis(expected, 0, 1), 1e-6)

    linen = jaxrnn.linen.GRU(H, zoneout=0.3)
    variables = linen.variables_from_layers(layers)
    close_trees(linen.apply(variables, x, deterministic=True), model(x), 1e-6)
    with pytest.raises(ValueError, match=r"zoneout=0.3 with deterministic=False need a 'dropout'"):
        linen.apply(variables, x, deterministic=False)
    train = linen.apply(variables, x, deterministic=False, rngs={"dropout": jax.random.key(0)})
    assert not np.allclose(train, model(x))


@pytest.mark.parametrize("bad", [1.0, -0.1, "no", True, None])
def test_bad_rates_are_refused(bad):
    match = r"zoneout: expected a rate in \[0, 1\), got "
    layers = layers_of(jaxrnn.gru_init)
    with pytest.raises(ValueError, match=match):
        jaxrnn.stack_scan(jaxrnn.gru_step, layers, jnp.ones((2, 1, D)), zoneout=bad)
    with pytest.raises(ValueError, match=match):
        jaxrnn.nnx.GRU.from_layers(layers, zoneout=bad)
    with pytest.raises(ValueError, match=match):
        jaxrnn.linen.GRU(H, zoneout=bad).apply(
            jaxrnn.linen.GRU.variables_from_layers(layers), jnp.ones((1, 2, D))
        )
