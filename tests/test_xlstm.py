"""xLSTM's cells against the ``xlstm`` package (PyTorch), and at the edges of their gates."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from xlstm.blocks.slstm.cell import sLSTMCell, sLSTMCellConfig

import jaxrnn
from tests.helpers import fast_jit, normal, tree_close

# sLSTM ---------------------------------------------------------------------------------------


def _xlstm_slstm(hidden, heads, seed):
    torch.manual_seed(seed)
    config = sLSTMCellConfig(
        hidden_size=hidden,
        num_heads=heads,
        backend="vanilla",
        dtype="float32",
        bias_init="standard",
        recurrent_weight_init="standard",
        output_shape="SBH",
    )
    cell = sLSTMCell(config)
    with torch.no_grad():  # weights large enough that memory mixing and every gate matter
        for p in cell.parameters():
            p.copy_(torch.randn_like(p) * 0.7)
    return cell


def test_from_xlstm_equals_the_package_values_and_gradients():
    """The package's vanilla sLSTMCell over a sequence, three heads: outputs, the final state
    (h, c, n, m) and torch autograd's gradients of a weighted sum of the outputs with respect
    to the recurrent kernel, the bias and the input, to 1e-5."""
    hidden, heads, steps, batch = 6, 3, 10, 2
    cell = _xlstm_slstm(hidden, heads, 0)
    x = torch.randn(batch, steps, 4 * hidden) * 2.0  # the package's (B, S, 4h) pre-activations
    weights = torch.randn(steps, batch, hidden)
    x.requires_grad_(True)
    out, state = cell(x)  # out (S, B, h), state (4, B, h)
    (out * weights).sum().backward()
    d_kernel = cell._recurrent_kernel_int2ext(cell._recurrent_kernel_.grad)
    d_bias = cell._bias_int2ext(cell._bias_.grad)
    want_dw_h, want_db = jaxrnn.interop._xlstm.slstm_arrays(d_kernel.numpy(), d_bias.numpy())

    params = jaxrnn.interop.from_xlstm(cell)
    assert params.num_heads == heads
    xs = jnp.asarray(x.detach().numpy().transpose(1, 0, 2))
    w = jnp.asarray(weights.numpy())

    @fast_jit
    def run(params, xs):
        def loss(params, xs):
            final, ys = jaxrnn.scan(jaxrnn.slstm_step, params, xs, gradient="rule")
            return jnp.sum(w * ys), (final, ys)

        return jax.grad(loss, (0, 1), has_aux=True)(params, xs)

    (grads, dxs), (final, ys) = run(params, xs)
    tol = dict(rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ys, out.detach().numpy(), **tol)
    for got, want in zip(final, state.detach().numpy(), strict=True):
        np.testing.assert_allclose(got, want, **tol)
    np.testing.assert_allclose(grads.w_h, want_dw_h, **tol)
    np.testing.assert_allclose(grads.b, want_db, **tol)
    np.testing.assert_allclose(dxs, x.grad.numpy().transpose(1, 0, 2), **tol)


def test_slstm_is_finite_at_pre_activations_of_50():
    """Every gate's pre-activation at +-50 (all 16 sign patterns of i, f, z, o at the first
    step and right after a reset, random signs elsewhere): the first step from the zero carry
    is σ(O~) tanh(Z~) exactly, N stays >= 1, and values and gradients are finite, the fused
    gradient equal to autodiff of the step."""
    h, steps, reset = 16, 8, 4
    patterns = 50.0 * (np.array([[(p >> g) & 1 for p in range(h)] for g in range(4)]) * 2 - 1)
    a = 50.0 * np.random.default_rng(0).choice([-1.0, 1.0], size=(steps, 4, h))
    a[0] = a[reset] = patterns  # (gate, unit)
    xs = jnp.asarray(a.reshape(steps, 1, 4 * h))  # one sequence of pre-activations
    params = jaxrnn.SLSTMParams(
        w_x=jnp.eye(4 * h), w_h=normal(1, (2, h // 2, 2 * h), scale=0.1), b=jnp.zeros(4 * h)
    )
    resets = jnp.zeros((steps, 1), bool).at[reset].set(True)

    @fast_jit
    def run(params, xs):
        def loss(params, xs, gradient):
            final, ys = jaxrnn.scan(jaxrnn.slstm_step, params, xs, resets=resets, gradient=gradient)
            return jnp.sum(ys) + sum(jnp.sum(leaf) for leaf in final), (final, ys)

        return [jax.grad(loss, (0, 1), has_aux=True)(params, xs, g) for g in ("rule", "autodiff")]

    (rule, (final, ys)), (auto, _) = run(params, xs)
    for leaf in jax.tree.leaves((rule, auto, final, ys)):
        assert np.isfinite(np.asarray(leaf)).all()
    tree_close(rule, auto, 1e-5, 1e-5)
    first = jax.nn.sigmoid(jnp.asarray(patterns[3])) * jnp.tanh(jnp.asarray(patterns[2]))
    np.testing.assert_array_equal(ys[0, 0], first)
    np.testing.assert_array_equal(ys[reset, 0], first)
    carry = jaxrnn.initial_carry(params, (1,))
    for x in xs:
        carry, _ = jaxrnn.slstm_step(params, carry, x)
        assert (np.asarray(carry.n) >= 1).all()


def test_slstm_step_errors():
    p = jaxrnn.slstm_init(jax.random.key(0), 3, 4, num_heads=2)
    carry = jaxrnn.initial_carry(p, (2,))
    step = functools.partial(jaxrnn.slstm_step, p)
    with pytest.raises(TypeError, match=r"carry: expected a jaxrnn.SLSTMState"):
        step(carry[:2], jnp.ones((2, 3)))
    with pytest.raises(ValueError, match=r"num_heads: expected a divisor of hidden_size=4, got 3"):
        jaxrnn.slstm_init(jax.random.key(0), 3, 4, num_heads=3)
