"""xLSTM's cells against the ``xlstm`` package (PyTorch), and at the edges of their gates."""

import dataclasses
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


@pytest.mark.slow  # the full suite: the fast lane keeps the parity tests
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


# mLSTM ---------------------------------------------------------------------------------------

D, H, HEADS = 4, 12, 3
S = H // HEADS


def _mlstm_params(seed=0):
    params = jaxrnn.mlstm_init(jax.random.key(seed), D, H, num_heads=HEADS)
    # Gates that read the input, so every weight matters.
    return dataclasses.replace(
        params, w_i=normal(seed + 1, (D, HEADS)), w_f=normal(seed + 2, (D, HEADS), scale=2.0)
    )


def _package_inputs(inputs):
    """The package's (B, NH, S, DH) q, k, v and (B, NH, S, 1) gates from jaxrnn's (T, B, K, s)
    inputs; the package scales the keys itself."""
    t = lambda a: torch.from_numpy(np.asarray(a, np.float64))
    qkv = [t(a).permute(1, 2, 0, 3) for a in (inputs.q, inputs.k * np.sqrt(S), inputs.v)]
    gates = [t(a).permute(1, 2, 0)[..., None] for a in (inputs.i, inputs.f)]
    return (*qkv, *gates)


def test_mlstm_step_equals_the_package_recurrent_step():
    """Ten steps of ``mlstm_step`` against ``recurrent_step_stabilized_simple`` fed the same
    projections (float64 in the package): outputs and the states C, n, m at every step."""
    from xlstm.blocks.mlstm.backends import recurrent_step_stabilized_simple as package_step

    params = _mlstm_params()
    xs = normal(3, (10, 2, D), scale=2.0)
    inputs = jaxrnn.cells.mlstm.mlstm_inputs(params, xs)
    q, k, v, i, f = _package_inputs(inputs)
    carry = jaxrnn.initial_carry(params, (2,))
    c, n, m = (
        torch.zeros(2, HEADS, *shape, dtype=torch.float64) for shape in ((S, S), (S, 1), (1, 1))
    )
    step = jax.jit(jaxrnn.mlstm_step)
    for t, x in enumerate(xs):
        carry, y = step(params, carry, x)
        at = lambda a, t=t: a[:, :, t : t + 1].clone()
        h, (c, n, m) = package_step(c, n, m, at(q), at(k), at(v), at(i), at(f))
        want = np.asarray(inputs.o[t]) * h.reshape(2, H).numpy()
        np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(carry.c, c.numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(carry.n, n[..., 0].numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(carry.m, m[..., 0, 0].numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.slow  # the full suite: the fast lane keeps the parity tests
def test_mlstm_parallel_forms_equal_the_package_parallel_form():
    """The quadratic form (one chunk) and the chunkwise form (chunks of 4, 7 and 24 steps)
    against ``parallel_stabilized_simple`` on the same projections. The package's form has
    no initial state; from the zero carry the two differ only through ``eps`` (1e-6)."""
    from xlstm.blocks.mlstm.backends import parallel_stabilized_simple

    params = _mlstm_params(5)
    xs = normal(6, (24, 2, D), scale=2.0)
    inputs = jaxrnn.cells.mlstm.mlstm_inputs(params, xs)
    h_tilde = parallel_stabilized_simple(*_package_inputs(inputs))  # (B, NH, T, DH)
    want = np.asarray(inputs.o) * h_tilde.permute(2, 0, 1, 3).reshape(24, 2, H).numpy()
    carry = jaxrnn.initial_carry(params, (2,))
    for chunk in (64, 4, 7, 24):
        _, ys = jax.jit(functools.partial(jaxrnn.rules.matrix_scan, chunk=chunk))(inputs, carry)
        np.testing.assert_allclose(ys, want, rtol=1e-5, atol=1e-5)


@pytest.mark.slow  # the full suite: the fast lane keeps the parity tests
def test_mlstm_chunkwise_equals_the_step_loop():
    """The chunkwise form (chunks of 5 over 23 steps: a ragged last chunk) against the loop of
    ``jaxrnn.scan``'s docstring: lengths ending inside a chunk, at 0 and beyond T, resets
    inside chunks and on chunk edges, both directions, a given carry; values and gradients
    of the params, carry and inputs."""
    from tests.helpers import outputs_and_grads, random_carry, reference_scan

    params = _mlstm_params(7)
    rule = jaxrnn.rules.MatrixMemory(jaxrnn.cells.mlstm.mlstm_inputs, chunk=5)
    steps, lengths = 23, jnp.array([23, 13, 0, 30])
    xs = normal(8, (steps, 4, D))
    carry = random_carry(params, 9, (4,))
    carry = carry._replace(m=carry.m * 4)  # stabilisers apart from the gates' scale
    resets = jnp.asarray(np.random.default_rng(1).random((steps, 4)) < 0.15).at[10, 0].set(True)
    keep = jnp.arange(steps)[:, None] < lengths[None]
    clean = jnp.where(keep[..., None], xs, 0.0)

    def chunked(reverse):
        def run(params, carry, xs):
            return rule(
                params, carry, carry, xs, keep, resets & keep,
                reverse=reverse, unroll=1, options={},
            )  # fmt: skip

        return run

    def looped(reverse):
        def run(params, carry, xs):
            return reference_scan(
                jaxrnn.mlstm_step, params, xs, carry=carry, lengths=lengths, resets=resets,
                reverse=reverse,
            )  # fmt: skip

        return run

    @fast_jit
    def both(params, carry, xs):
        return [
            (outputs_and_grads(chunked(r), params, carry, xs),
             outputs_and_grads(looped(r), params, carry, xs))
            for r in (False, True)
        ]  # fmt: skip

    for got, want in both(params, carry, clean):
        tree_close(got[0], want[0], 1e-5, 1e-5)
        tree_close(got[1], want[1], 1e-4, 1e-5)


@pytest.mark.slow
def test_mlstm_chunkwise_memory_grows_as_t_times_l():
    """The compiled training step's working memory at T = 4096 and 16384 (chunks of 64):
    4x the steps, at most 4.5x the memory, well below one T x T matrix."""
    params = jaxrnn.mlstm_init(jax.random.key(0), 8, 8, num_heads=2)

    def temp_bytes(steps):
        xs = jax.ShapeDtypeStruct((steps, 1, 8), jnp.float32)
        loss = lambda p, xs: jnp.sum(jaxrnn.scan(jaxrnn.mlstm_step, p, xs)[1] ** 2)
        compiled = jax.jit(jax.grad(loss)).lower(params, xs).compile()
        return compiled.memory_analysis().temp_size_in_bytes

    small, large = temp_bytes(4096), temp_bytes(16384)
    assert large <= 4.5 * small
    assert large < 16384**2 * 4  # one float32 T x T matrix
