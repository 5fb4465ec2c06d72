"""hidden_grad_norms against the BPTT recursion by hand and against finite differences."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn

CELLS = {
    name: (jaxrnn.get_cell(name).init, jaxrnn.get_cell(name).step)
    for name in ("rnn", "lstm", "gru")
}


def _loss(ys):
    # A direct term at every step and a stronger one at the end, as a readout would.
    weights = jnp.linspace(0.1, 1.0, ys.shape[0]).reshape((-1,) + (1,) * (ys.ndim - 1))
    return jnp.sum(weights * jnp.sin(ys)) + 0.5 * jnp.sum(ys[-1] ** 2)


def test_tanh_rnn_matches_the_bptt_recursion_by_hand(x64):
    T, d, h = 7, 3, 4
    params = jaxrnn.rnn_init(jax.random.key(0), d, h, dtype=jnp.float64)
    xs = jax.random.normal(jax.random.key(1), (T, d), jnp.float64)
    norms = jaxrnn.hidden_grad_norms(jaxrnn.rnn_step, params, xs, _loss)

    w_x, w_h, b = (np.asarray(a) for a in (params.w_x, params.w_h, params.b))
    x = np.asarray(xs)
    hs, prev = [], np.zeros(h)
    for t in range(T):
        prev = np.tanh(x[t] @ w_x + prev @ w_h + b)
        hs.append(prev)
    weights = np.linspace(0.1, 1.0, T)
    direct = [weights[t] * np.cos(hs[t]) for t in range(T)]
    direct[-1] = direct[-1] + hs[-1]
    g = [None] * T
    g[-1] = direct[-1]
    for t in range(T - 2, -1, -1):
        g[t] = direct[t] + (g[t + 1] * (1 - hs[t + 1] ** 2)) @ w_h.T
    expected = np.linalg.norm(np.stack(g), axis=-1)
    np.testing.assert_allclose(np.asarray(norms), expected, rtol=1e-10)


def _perturbed_loss(init, step, params, xs, t, direction, eps):
    carry = jaxrnn.initial_carry(params, xs.shape[1:-1])
    ys = []
    for s in range(xs.shape[0]):
        carry, y = step(params, carry, xs[s])
        if s == t:
            y = y + eps * direction
            carry = carry._replace(h=y) if hasattr(carry, "_replace") else y
        ys.append(y)
    return float(_loss(jnp.stack(ys)))


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_every_cell_matches_finite_differences(cell, x64):
    init, step = CELLS[cell]
    T, B, d, h = 5, 2, 3, 4
    params = init(jax.random.key(2), d, h, dtype=jnp.float64)
    xs = jax.random.normal(jax.random.key(3), (T, B, d), jnp.float64)
    norms = jaxrnn.hidden_grad_norms(step, params, xs, _loss)
    assert norms.shape == (T, B)

    # ‖g‖ from the finite-difference gradient, one coordinate of H_t at a time.
    eps = 1e-6
    for t in (0, 2, T - 1):
        g = np.zeros((B, h))
        for b in range(B):
            for i in range(h):
                u = jnp.zeros((B, h), jnp.float64).at[b, i].set(1.0)
                plus = _perturbed_loss(init, step, params, xs, t, u, eps)
                minus = _perturbed_loss(init, step, params, xs, t, u, -eps)
                g[b, i] = (plus - minus) / (2 * eps)
        np.testing.assert_allclose(np.asarray(norms[t]), np.linalg.norm(g, axis=-1), rtol=1e-6)


def test_padded_steps_get_no_gradient_and_lengths_match_truncation():
    params = jaxrnn.gru_init(jax.random.key(4), 2, 3)
    xs = jax.random.normal(jax.random.key(5), (6, 2, 2))
    lengths = jnp.array([6, 4])
    norms = jaxrnn.hidden_grad_norms(
        jaxrnn.gru_step, params, xs, lambda ys: jnp.sum(ys**2), lengths=lengths
    )
    assert float(jnp.abs(norms[4:, 1]).max()) == 0.0
    short = jaxrnn.hidden_grad_norms(jaxrnn.gru_step, params, xs[:4, 1:], lambda ys: jnp.sum(ys**2))
    np.testing.assert_allclose(norms[:4, 1], short[:, 0], rtol=1e-5)


def test_vanishing_and_the_lstm_contrast():
    """A contractive tanh RNN loses the gradient going back; an LSTM keeps much more."""
    T, d, h = 60, 2, 16
    xs = jax.random.uniform(jax.random.key(6), (T, d))
    rnn = jaxrnn.rnn_init(jax.random.key(7), d, h)
    rnn = jaxrnn.RNNParams(rnn.w_x, 0.5 * rnn.w_h, rnn.b)  # ‖W_hh‖ = 0.5
    lstm = jaxrnn.lstm_init(jax.random.key(7), d, h)
    last = lambda ys: jnp.sum(ys[-1])
    rnn_norms = jaxrnn.hidden_grad_norms(jaxrnn.rnn_step, rnn, xs, last)
    lstm_norms = jaxrnn.hidden_grad_norms(jaxrnn.lstm_step, lstm, xs, last)
    # Each step back multiplies by at most ‖W_hh‖ = 0.5 (tanh' <= 1).
    assert float(rnn_norms[-11]) <= 0.5**10 * float(rnn_norms[-1]) * (1 + 1e-4)
    assert float(lstm_norms[0] / lstm_norms[-1]) > 1e3 * float(rnn_norms[0] / rnn_norms[-1])


def test_rejects_a_carry_without_a_hidden_state():
    def step(params, carry, x):
        return {"state": carry["state"] + x @ params}, carry["state"]

    with pytest.raises(TypeError, match="carry"):
        jaxrnn.hidden_grad_norms(
            step, jnp.ones((2, 2)), jnp.ones((3, 2)), jnp.sum, carry={"state": jnp.zeros(2)}
        )
