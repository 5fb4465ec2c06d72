"""``jaxrnn.scan`` against ``lax.scan``, a Python loop, slicing and separate runs."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import jaxrnn
from tests.helpers import CASES, FAST_CLASSIC, make, random_carry

D, H = 4, 6
close = functools.partial(np.testing.assert_allclose, rtol=1e-5, atol=1e-6)


def tree_close(a, b, **kw):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(x, y, **({"rtol": 1e-5, "atol": 1e-6} | kw))


def leaky_step(params, carry, x):
    """A user's own cell: a pytree carry and a pytree output."""
    state, count = carry
    state = params["decay"] * state + jnp.tanh(x @ params["w"])
    return (state, count + 1.0), {"state": state, "norm": jnp.sum(state**2, axis=-1)}


def leaky_params(key):
    return {"decay": jnp.float32(0.9), "w": jax.random.normal(key, (D, H))}


def leaky_carry(batch):
    return (jnp.zeros((*batch, H)), jnp.zeros(batch))


def test_user_step_with_pytree_carry_and_output():
    params = leaky_params(jax.random.key(3))
    xs = jax.random.normal(jax.random.key(4), (7, 2, D))
    got = jaxrnn.scan(leaky_step, params, xs, carry=leaky_carry((2,)))
    want = jax.lax.scan(functools.partial(leaky_step, params), leaky_carry((2,)), xs)
    tree_close(got, want)
    # With lengths, every output leaf is zeroed past the length and the carry stops there.
    lengths = jnp.array([7, 3])
    (state, count), ys = jaxrnn.scan(
        leaky_step, params, xs, carry=leaky_carry((2,)), lengths=lengths
    )
    np.testing.assert_array_equal(count, [7.0, 3.0])
    np.testing.assert_array_equal(ys["norm"][3:, 1], 0.0)
    close(state[1], ys["state"][2, 1])
    with pytest.raises(TypeError, match="params: no initial carry is known for type dict"):
        jaxrnn.scan(leaky_step, params, xs)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("name", FAST_CLASSIC)
def test_lengths_with_two_batch_axes_equal_slicing(name, reverse):
    params, step = make(name, D, H, seed=5), CASES[name].step
    T = 8
    xs = jax.random.normal(jax.random.key(6), (T, 2, 3, D))
    lengths = jnp.array([[8, 1, 5], [0, 3, 12]])
    carry0 = random_carry(params, 7, (2, 3))
    carry, ys = jax.jit(functools.partial(jaxrnn.scan, step, reverse=reverse))(
        params, xs, carry=carry0, lengths=lengths
    )
    for i in range(2):
        for j in range(3):
            n = min(int(lengths[i, j]), T)
            c0 = jax.tree.map(lambda a, i=i, j=j: a[i, j], carry0)
            seq = xs[:n, i, j]
            # The valid prefix alone, run forwards or backwards, outputs at their positions.
            want_c, want_ys = jax.lax.scan(
                functools.partial(step, params), c0, seq, reverse=reverse
            )
            tree_close(jax.tree.map(lambda a, i=i, j=j: a[i, j], carry), want_c)
            if n:
                close(ys[:n, i, j], want_ys)
            np.testing.assert_array_equal(ys[n:, i, j], 0.0)


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_reverse_equals_flipped_forward(name):
    params, step = make(name, D, H, seed=8), CASES[name].step
    xs = jax.random.normal(jax.random.key(9), (10, 2, D))
    carry_r, ys_r = jaxrnn.scan(step, params, xs, reverse=True)
    carry_f, ys_f = jaxrnn.scan(step, params, xs[::-1])
    tree_close(carry_r, carry_f)
    close(ys_r, ys_f[::-1])


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("name", FAST_CLASSIC)
def test_resets_equal_separate_runs(name, reverse):
    params, step = make(name, D, H, seed=10), CASES[name].step
    T = 12
    xs = jax.random.normal(jax.random.key(11), (T, 2, D))
    carry0 = random_carry(params, 12, (2,))
    # Sequence 0 packs episodes [0, 4), [4, 9), [9, 12); sequence 1 has no reset.
    resets = np.zeros((T, 2), bool)
    starts = [0, 4, 9] if not reverse else [3, 8, 11]  # first step processed in each episode
    resets[starts, 0] = True
    carry, ys = jaxrnn.scan(
        step, params, xs, carry=carry0, resets=jnp.asarray(resets), reverse=reverse
    )
    c0 = jax.tree.map(lambda a: a[0], carry0)
    pieces, c = [], None
    for lo, hi in [(0, 4), (4, 9), (9, 12)]:
        c, y = jax.lax.scan(functools.partial(step, params), c0, xs[lo:hi, 0], reverse=reverse)
        pieces.append(y)
        if reverse and lo == 0:
            first_episode_carry = c
    close(ys[:, 0], jnp.concatenate(pieces))
    final = first_episode_carry if reverse else c
    tree_close(jax.tree.map(lambda a: a[0], carry), final)
    tree_close(
        jax.tree.map(lambda a: a[1], (carry, jnp.swapaxes(ys, 0, 1))),
        jax.lax.scan(
            functools.partial(step, params),
            jax.tree.map(lambda a: a[1], carry0),
            xs[:, 1],
            reverse=reverse,
        ),
    )


def test_resets_and_lengths_together():
    params, step = make("lstm", D, H, seed=13), CASES["lstm"].step
    xs = jax.random.normal(jax.random.key(14), (6, 1, D))
    resets = jnp.zeros((6, 1), bool).at[2, 0].set(True)
    carry, ys = jaxrnn.scan(step, params, xs, resets=resets, lengths=jnp.array([4]))
    want_c, want = jaxrnn.scan(step, params, xs[2:4])
    close(ys[2:4], want)
    np.testing.assert_array_equal(ys[4:], 0.0)
    tree_close(carry, want_c)


# Chunks of k = ceil(sqrt(T)) steps: one step (no chunks), one chunk, chunks and a tail,
# chunks alone, chunks and a longer tail, for the LSTM; the RNN and GRU (whose rules differ
# only in their step) at chunks and a tail. The fast lane sees the LSTM at three of them.
SLOW = pytest.mark.slow
REMAT_CASES = [
    pytest.param("lstm", reverse, T, marks=[SLOW] if T in (1, 7) else [])
    for T in (1, 2, 7, 16, 23)
    for reverse in (False, True)
]
REMAT_CASES += [
    pytest.param(name, reverse, T, marks=SLOW)
    for name in ("rnn_tanh", "gru")
    for reverse, T in ((False, 7), (True, 23))
]


@pytest.mark.parametrize(("name", "reverse", "T"), REMAT_CASES)
def test_remat_keeps_values_and_gradients(name, reverse, T):
    params, step = make(name, D, H, seed=15), CASES[name].step
    xs = jax.random.normal(jax.random.key(16), (T, 3, D))
    lengths = jnp.array([T, max(T - 3, 0), T // 2])

    def loss(params, xs, remat):
        carry, ys = jaxrnn.scan(step, params, xs, lengths=lengths, reverse=reverse, remat=remat)
        return jnp.sum(ys**2) + sum(jnp.sum(c) for c in jax.tree.leaves(carry))

    value = functools.partial(jax.jit(jax.value_and_grad(loss, (0, 1)), static_argnums=2))
    tree_close(value(params, xs, True), value(params, xs, False), rtol=1e-5, atol=1e-5)
    tree_close(
        jaxrnn.scan(step, params, xs, reverse=reverse, remat=True),
        jaxrnn.scan(step, params, xs, reverse=reverse),
    )


def test_remat_memory_grows_sublinearly():
    params = jaxrnn.lstm_init(jax.random.key(0), 32, 32)

    def temp_bytes(T, remat):
        xs = jnp.ones((T, 4, 32))
        loss = lambda p: jaxrnn.scan(jaxrnn.lstm_step, p, xs, remat=remat)[1].sum()
        return jax.jit(jax.grad(loss)).lower(params).compile().memory_analysis().temp_size_in_bytes

    plain = temp_bytes(1024, False) / temp_bytes(256, False)
    remat = temp_bytes(1024, True) / temp_bytes(256, True)
    assert plain > 3.5  # linear in T
    assert remat < 2.5  # about sqrt(4) = 2
    assert temp_bytes(1024, True) < temp_bytes(1024, False) / 4


@pytest.mark.parametrize("unroll", [1, 3, True])
def test_unroll_keeps_values(unroll):
    params, step = make("gru", D, H, seed=17), CASES["gru"].step
    xs = jax.random.normal(jax.random.key(18), (10, 2, D))
    lengths = jnp.array([10, 6])
    tree_close(
        jaxrnn.scan(step, params, xs, lengths=lengths, unroll=unroll),
        jaxrnn.scan(step, params, xs, lengths=lengths),
    )


@pytest.mark.slow  # the fast lane's time: see README
def test_forward_mode_through_a_wrapped_step_matches_the_fused_reverse_mode(x64):
    """The fused gradient is reverse-mode only; a wrapped step takes the plain path."""
    params, step = make("lstm", D, H, seed=25, dtype=jnp.float64), CASES["lstm"].step
    xs = jax.random.normal(jax.random.key(26), (5, 2, D), jnp.float64)
    lengths = jnp.array([5, 3])

    def outputs(step):
        return lambda xs: jaxrnn.scan(step, params, xs, lengths=lengths, reverse=True)[1]

    wrapped = outputs(lambda p, c, x: step(p, c, x))
    check_grads(wrapped, (xs,), order=1, modes=["fwd"])
    close(jax.jacfwd(wrapped)(xs), jax.jacrev(outputs(step))(xs))
