"""The MGU and the ConvLSTM against NumPy renderings of their equations, and in every driver.

The MGU's fused gradient is held to ``jaxrnn.scan(..., gradient="autodiff")``
(``lax.scan`` of the step, differentiated by JAX) under every scan option.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.test_util import check_grads

import jaxrnn
from jaxrnn._cell import scan_rule
from tests import reference
from tests.test_fused import OPTIONS, loss_weights, reference_scan, tree_close

D, H = 4, 5
KEY = jax.random.key(0)

# NumPy, float64, from the formulas -------------------------------------------------------


def _np(p):
    return {k: np.asarray(v, np.float64) for k, v in vars(p).items() if hasattr(v, "shape")}


def np_mgu(p, h, x, mask=None):
    q = _np(p)
    n = q["w_h"].shape[0]
    h, x = np.asarray(h, np.float64), np.asarray(x, np.float64)
    h_in = h if mask is None else h * np.asarray(mask, np.float64)  # the matmuls only
    w_xf, w_xn = q["w_x"][:, :n], q["w_x"][:, n:]
    w_hf, w_hn = q["w_h"][:, :n], q["w_h"][:, n:]
    f = reference.sigmoid(x @ w_xf + q["b_x"][:n] + h_in @ w_hf)
    if p.reset_gate:
        cand = np.tanh(x @ w_xn + q["b_x"][n:] + f * (h_in @ w_hn + q["b_h"]))
    else:
        cand = np.tanh(x @ w_xn + q["b_x"][n:] + h_in @ w_hn)
    h = (1 - f) * cand + f * h
    return h, h


def np_conv_same(x, w):
    """Stride-1 'SAME' cross-correlation: (k - 1) // 2 zeros before, k // 2 after."""
    k = w.shape[:-2]
    spatial = x.shape[x.ndim - len(k) - 1 : -1]
    pad = [(0, 0)] * (x.ndim - len(k) - 1) + [((s - 1) // 2, s // 2) for s in k] + [(0, 0)]
    xp = np.pad(x, pad)
    out = np.zeros((*x.shape[:-1], w.shape[-1]))
    for offset in np.ndindex(*k):
        window = tuple(slice(o, o + s) for o, s in zip(offset, spatial, strict=True))
        out += xp[(Ellipsis, *window, slice(None))] @ w[offset]
    return out


def np_conv_lstm(p, carry, x, mask=None):
    q = _np(p)
    h, c = (np.asarray(a, np.float64) for a in carry)
    x = np.asarray(x, np.float64)
    h_in = h if mask is None else h * np.asarray(mask, np.float64)
    n = q["b"].shape[0] // 4
    gates = np_conv_same(x, q["w_x"]) + np_conv_same(h_in, q["w_h"]) + q["b"]
    i, f, g, o = (gates[..., k * n : (k + 1) * n] for k in range(4))
    i, f, g, o = reference.sigmoid(i), reference.sigmoid(f), np.tanh(g), reference.sigmoid(o)
    c = f * c + i * g
    h = o * np.tanh(c)
    return (h, c), h


# Test cases ------------------------------------------------------------------------------

# case -> (init, step, NumPy reference, spatial shape, init options)
CASES = {
    "mgu": (jaxrnn.mgu_init, jaxrnn.mgu_step, np_mgu, (), {}),
    "mgu_no_reset": (jaxrnn.mgu_init, jaxrnn.mgu_step, np_mgu, (), {"reset_gate": False}),
    "conv1d": (
        jaxrnn.conv_lstm_init,
        jaxrnn.conv_lstm_step,
        np_conv_lstm,
        (6,),
        {"kernel_size": (3,)},
    ),
    "conv2d_even": (
        jaxrnn.conv_lstm_init,
        jaxrnn.conv_lstm_step,
        np_conv_lstm,
        (5, 4),
        {"kernel_size": (3, 2)},
    ),
    "conv3d": (
        jaxrnn.conv_lstm_init,
        jaxrnn.conv_lstm_step,
        np_conv_lstm,
        (3, 4, 2),
        {"kernel_size": (1, 3, 2)},
    ),
}


def normal(seed, shape, dtype=jnp.float32, scale=1.0):
    """Random numbers from NumPy: no XLA compile per shape, as jax.random would cost."""
    return jnp.asarray(scale * np.random.default_rng(seed).normal(size=shape), dtype)


def make(case, seed=0, dtype=jnp.float32, d=D, h=H):
    """(params, step, reference, spatial): the init's structure filled with random numbers.

    Weights have variance 1/fan-in; biases are distinct and random, so every bias counts.
    """
    init, step, ref, spatial, options = CASES[case]
    shapes = jax.eval_shape(lambda k: init(k, d, h, **options, dtype=dtype), jax.random.key(0))
    return random_like(shapes, seed), step, ref, spatial


def random_like(shapes, seed=0):
    """Random arrays for every leaf of ``shapes`` (from ``jax.eval_shape``); 1/fan-in variance."""
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


def to_numpy(carry):
    if isinstance(carry, jaxrnn.LSTMState):
        return (np.asarray(carry.h), np.asarray(carry.c))
    return np.asarray(carry)


def random_carry(params, seed, batch_shape, dtype=jnp.float32):
    zeros = jax.eval_shape(lambda: jaxrnn.initial_carry(params, batch_shape))
    leaves, tree = jax.tree.flatten(zeros)
    return jax.tree.unflatten(
        tree, [normal(seed + k, a.shape, dtype, 0.5) for k, a in enumerate(leaves)]
    )


def binary_mask(seed, shape):
    """A recurrent mask of 0s and 2s (dropout at rate 0.5)."""
    return jnp.asarray(2.0 * (np.random.default_rng(seed).random(shape) < 0.5), jnp.float32)


def close(a, b, tol=1e-5):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=tol, atol=tol)


# The step against NumPy -------------------------------------------------------------------


@pytest.mark.parametrize("batch", [(), (3,), (2, 3)])
@pytest.mark.parametrize("case", CASES)
def test_step_matches_numpy(case, batch):
    params, step, ref, spatial = make(case)
    carry = random_carry(params, 1, (*batch, *spatial))
    x = normal(2, (*batch, *spatial, D))
    mask = binary_mask(3, (*batch, *spatial, H))
    kwargs = {"recurrent_mask": mask} if batch == (3,) else {}  # one compile per case
    new, y = jax.jit(functools.partial(step, **kwargs))(params, carry, x)
    want_carry, want_y = ref(params, to_numpy(carry), np.asarray(x), kwargs.get("recurrent_mask"))
    assert y.shape == (*batch, *spatial, H)
    close(y, want_y)
    close(new, want_carry)


@pytest.mark.parametrize("case", ["mgu", "mgu_no_reset", "conv1d"])
def test_step_gradients_to_second_order(case, x64):
    params, step, _, spatial = make(case, dtype=jnp.float64, d=2, h=3)
    carry = random_carry(params, 1, (2, *spatial), jnp.float64)
    x = normal(2, (2, *spatial, 2), jnp.float64)
    check_grads(jax.jit(step), (params, carry, x), order=2, modes=["rev"])


def test_init_options_and_shapes():
    p = jax.jit(jaxrnn.mgu_init, static_argnums=(1, 2))(jax.random.key(0), 3, 4)
    np.testing.assert_array_equal(p.b_x, np.r_[np.ones(4), np.zeros(4)])  # Flax's forget bias
    np.testing.assert_array_equal(p.b_h, 0.0)
    assert p.reset_gate is True and jaxrnn.get_cell("mgu").options["reset_gate"] is True
    q = jax.jit(lambda k: jaxrnn.conv_lstm_init(k, 8, 16, (3, 5), forget_bias=2.0))(KEY)
    assert q.w_x.shape == (3, 5, 8, 64) and q.w_h.shape == (3, 5, 16, 64)
    assert (q.input_size, q.hidden_size, q.kernel_size, q.num_feature_axes) == (8, 16, (3, 5), 3)
    np.testing.assert_array_equal(
        q.b.reshape(4, 16), np.array([[0.0], [2.0], [0.0], [0.0]]) * np.ones(16)
    )
    # LeCun normal over the fan-in prod(kernel) * channels.
    assert abs(np.var(np.asarray(q.w_x)) * 15 * 8 - 1) < 0.15
    assert abs(np.var(np.asarray(q.w_h)) * 15 * 16 - 1) < 0.15


# In jaxrnn.scan ---------------------------------------------------------------------------

# No option, and every option of jaxrnn.scan at once, with and without remat, for both
# forms, with a recurrent mask (each case compiles twice: a full product is slow).
MGU_CASES = [
    ("mgu", "none", (), False),
    ("mgu", "all", (3,), True),
    ("mgu", "remat_all", (3,), False),
    ("mgu_no_reset", "all", (2, 3), True),
]


def scan_arguments(case, option, batch, steps=7, mask=False):
    params, step, _, spatial = make(case)
    xs = normal(4, (steps, *batch, *spatial, D))
    carry = random_carry(params, 5, (*batch, *spatial))
    options = OPTIONS[option]
    kwargs = {"reverse": options.get("reverse", False)}
    size = int(np.prod(batch))
    if options.get("lengths"):
        lengths = np.array([steps, 0, 3, steps + 2, 1, 5])[:size] if size > 1 else np.array([4])
        kwargs["lengths"] = jnp.asarray(
            np.broadcast_to(lengths.reshape(batch + (1,) * len(spatial)), batch + spatial)
        )
    if options.get("resets"):
        resets = np.random.default_rng(6).random((steps, *batch)) < 0.3
        kwargs["resets"] = jnp.asarray(
            np.broadcast_to(
                resets.reshape(resets.shape + (1,) * len(spatial)), resets.shape + spatial
            )
        )
    extra = {k: options[k] for k in ("remat", "unroll") if k in options}
    if mask:
        m = binary_mask(7, (*batch, *spatial, H))
        step = functools.partial(step, recurrent_mask=m)
    return params, step, xs, carry, kwargs, extra


def values_and_grads(run, params, carry, xs):
    def f(params, carry, xs):
        out = run(params, carry, xs)
        return out, loss_weights(*out[::-1])

    @jax.jit
    def both(params, carry, xs):
        (out, loss), vjp = jax.vjp(f, params, carry, xs)
        return out, loss, vjp((jax.tree.map(jnp.zeros_like, out), jnp.ones_like(loss)))

    return both(params, carry, xs)


@pytest.mark.parametrize(("case", "option", "batch", "mask"), MGU_CASES)
def test_mgu_fused_gradient_equals_autodiff(case, option, batch, mask):
    params, step, xs, carry, kwargs, extra = scan_arguments(case, option, batch, mask=mask)
    assert scan_rule(step, params) is not None

    def run(gradient):
        return lambda p, c, xs: jaxrnn.scan(
            step, p, xs, carry=c, gradient=gradient, **kwargs, **extra
        )

    got = values_and_grads(run("auto"), params, carry, xs)
    want = values_and_grads(run("autodiff"), params, carry, xs)
    tree_close(got[0], want[0], 1e-5, 1e-6)
    tree_close(got[1:], want[1:], 1e-4, 1e-5)
    if case == "mgu_no_reset":
        np.testing.assert_array_equal(got[2][0].b_h, 0.0)


def test_mgu_fused_gradient_of_the_recurrent_mask():
    params, step, xs, carry, kwargs, _ = scan_arguments("mgu", "lengths", (3,), mask=True)
    mask = step.keywords["recurrent_mask"]

    def run(gradient):
        def f(p, c, xs, m):
            s = functools.partial(jaxrnn.mgu_step, recurrent_mask=m)
            return loss_weights(*jaxrnn.scan(s, p, xs, carry=c, gradient=gradient, **kwargs)[::-1])

        return jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2, 3)))(params, carry, xs, mask)

    tree_close(run("auto"), run("autodiff"), 1e-4, 1e-5)


def test_conv_lstm_scan_options_equal_the_loop():
    # lengths and resets per position, as the docstring says, broadcast from per sequence.
    params, step, xs, carry, kwargs, extra = scan_arguments("conv1d", "remat_all", (3,))
    got = values_and_grads(
        lambda p, c, xs: jaxrnn.scan(step, p, xs, carry=c, **kwargs, **extra), params, carry, xs
    )
    want = values_and_grads(
        lambda p, c, xs: reference_scan(step, p, xs, carry=c, **kwargs), params, carry, xs
    )
    tree_close(got[0], want[0], 1e-5, 1e-6)
    tree_close(got[1:], want[1:], 1e-4, 1e-5)


# Stacks and modules -----------------------------------------------------------------------


def test_mgu_stack_matches_numpy():
    layers = random_like(
        jax.eval_shape(
            lambda k: jaxrnn.stack_init(k, jaxrnn.mgu_init, D, H, num_layers=2, bidirectional=True),
            jax.random.key(0),
        )
    )
    xs = normal(1, (6, 3, D))
    lengths = np.array([6, 2, 0])
    carry, ys = jax.jit(functools.partial(jaxrnn.stack_scan, jaxrnn.mgu_step))(
        layers, xs, lengths=lengths
    )
    want_carry, want_ys = reference.stack(np_mgu, layers, xs, lengths)
    close(ys, want_ys)
    for k in range(2):
        for j in range(2):
            close(carry[k][j], np.stack(want_carry[k][j]))


def test_conv_lstm_stack_matches_numpy():
    layers = random_like(
        jax.eval_shape(
            lambda k: jaxrnn.stack_init(
                k, jaxrnn.conv_lstm_init, 2, 3, num_layers=2, kernel_size=(3, 3)
            ),
            jax.random.key(0),
        )
    )
    assert layers[1][0].w_x.shape == (3, 3, 3, 12)
    xs = normal(1, (4, 2, 5, 5, 2))
    carry, ys = jax.jit(functools.partial(jaxrnn.stack_scan, jaxrnn.conv_lstm_step))(layers, xs)
    want = np.asarray(xs)
    for k, (p,) in enumerate(layers):
        zero = np.zeros((2, 5, 5, 3))
        state, want = reference.run(np_conv_lstm, p, (zero, zero), want)
        close(carry[k][0], state)
    close(ys, want)
    # One step at a time through the stack gives the same.
    step = functools.partial(jaxrnn.stack_step, jaxrnn.conv_lstm_step, layers)
    _, ys_stepped = jax.jit(jax.lax.scan, static_argnums=0)(
        step, jaxrnn.initial_carry(layers, (2, 5, 5)), xs
    )
    close(ys_stepped, ys)


def test_modules_run_the_new_cells():
    x = normal(2, (3, 6, D))  # (B, T, d)
    lengths = jnp.array([6, 4, 1])
    model = jaxrnn.nnx.Recurrent("mgu", D, H, reset_gate=False, rngs=nnx.Rngs(0))
    assert model.to_layers()[0][0].reset_gate is False
    want = jaxrnn.stack_scan(
        jaxrnn.mgu_step, model.to_layers(), jnp.moveaxis(x, 1, 0), lengths=lengths
    )[1]
    close(model(x, lengths=lengths), jnp.moveaxis(want, 0, 1), 1e-6)
    linen = jaxrnn.linen.Recurrent(H, cell="mgu")
    variables = jax.jit(linen.init)(jax.random.key(0), x)
    want = jaxrnn.stack_scan(
        jaxrnn.mgu_step, linen.to_layers(variables), jnp.moveaxis(x, 1, 0), lengths=lengths
    )[1]
    close(linen.apply(variables, x, lengths=lengths), jnp.moveaxis(want, 0, 1), 1e-6)


def test_conv_lstm_modules_take_batch_major_images_and_per_sequence_lengths():
    x = normal(3, (2, 5, 4, 4, 2))  # (B, T, H, W, C)
    lengths, resets = jnp.array([5, 2]), jnp.zeros((2, 5), bool).at[0, 3].set(True)
    abstract = nnx.eval_shape(
        lambda: jaxrnn.nnx.Recurrent(
            "conv_lstm", 2, 3, kernel_size=(3, 3), bidirectional=True, rngs=nnx.Rngs(0)
        )
    )
    graph, state = nnx.split(abstract)
    model = nnx.merge(graph, random_like(state))  # random numbers, not an init that compiles
    assert model.to_layers()[0][1].w_h.shape == (3, 3, 3, 12)
    carry, ys = model(x, lengths=lengths, resets=resets, return_carry=True)
    assert ys.shape == (2, 5, 4, 4, 6) and carry[0][0].h.shape == (2, 4, 4, 3)
    spread = (slice(None), slice(None), None, None)
    want_carry, want = jaxrnn.stack_scan(
        jaxrnn.conv_lstm_step,
        model.to_layers(),
        jnp.moveaxis(x, 1, 0),
        lengths=jnp.broadcast_to(lengths[:, None, None], (2, 4, 4)),
        resets=jnp.broadcast_to(resets.T[spread], (5, 2, 4, 4)),
    )
    close(ys, jnp.moveaxis(want, 0, 1), 1e-6)
    close(carry, want_carry, 1e-6)
    np.testing.assert_array_equal(ys[1, 2:], 0.0)
    linen = jaxrnn.linen.Recurrent(
        3, cell="conv_lstm", cell_options={"kernel_size": (3, 3)}, bidirectional=True
    )
    shapes = jax.eval_shape(linen.init, jax.random.key(0), x)
    assert linen.to_layers(shapes)[0][1].w_x.shape == (3, 3, 2, 12)
    variables = linen.variables_from_layers(model.to_layers())
    close(linen.apply(variables, x, lengths=lengths, resets=resets), ys, 1e-6)
    with pytest.raises(ValueError, match=r"lengths: expected shape \(2,\)"):
        model(x, lengths=jnp.array([5, 2, 1]))
    with pytest.raises(ValueError, match=r"inputs: expected shape \(\*batch, T, \*spatial, d\)"):
        model(x[0, 0])


# Careless users ---------------------------------------------------------------------------


def test_bad_options_are_refused():
    key = jax.random.key(0)
    with pytest.raises(TypeError, match="reset_gate: expected a bool, got 'no'"):
        jax.eval_shape(lambda k: jaxrnn.mgu_init(k, 3, 4, reset_gate="no"), key)
    for init, args in ((jaxrnn.mgu_init, ()), (jaxrnn.conv_lstm_init, ((3,),))):
        with pytest.raises(TypeError, match="dtype: expected a real floating-point dtype"):
            init(key, 3, 4, *args, dtype=jnp.int32)
    with pytest.raises(TypeError, match=r"kernel_size: expected a tuple .* \(3,\) for 1-D"):
        jaxrnn.conv_lstm_init(key, 3, 4, 3)
    for bad in ((), (3, 3, 3, 3), (0, 3), (3.0,), (True,), "33", None):
        with pytest.raises(ValueError, match="kernel_size: expected a tuple of 1 to 3 positive"):
            jaxrnn.conv_lstm_init(key, 3, 4, bad)
    with pytest.raises(ValueError, match="kernel_size: expected a tuple of 1 to 3 positive"):
        jaxrnn.nnx.Recurrent("conv_lstm", 3, 4, rngs=nnx.Rngs(0))  # kernel_size forgotten
    with pytest.raises(ValueError, match="input_size: expected a positive int"):
        jaxrnn.conv_lstm_init(key, 0, 4, (3,))
    # Even kernels are accepted: 'SAME' puts the extra padding after, as lax.conv does.
    even = jax.eval_shape(lambda k: jaxrnn.conv_lstm_init(k, 3, 4, [2, 4]), key)
    assert even.kernel_size == (2, 4)


def test_bad_step_inputs_are_refused():
    params = random_like(jax.eval_shape(lambda k: jaxrnn.conv_lstm_init(k, 3, 4, (3, 3)), KEY))
    carry = jaxrnn.initial_carry(params, (2, 5, 5))
    with pytest.raises(ValueError, match=r"x: expected shape \(\*batch, \*spatial, C_in\) with 2"):
        jaxrnn.conv_lstm_step(params, jaxrnn.initial_carry(params, (5,)), jnp.ones((5, 3)))
    with pytest.raises(ValueError, match=r"x: expected feature size 3"):
        jaxrnn.conv_lstm_step(params, carry, jnp.ones((2, 5, 5, 4)))
    with pytest.raises(
        ValueError, match=r"carry\.h: expected shape \(2, 5, 6, 4\) .* got \(2, 5, 5, 4\)"
    ):
        jaxrnn.conv_lstm_step(params, carry, jnp.ones((2, 5, 6, 3)))
    with pytest.raises(TypeError, match=r"carry: expected a jaxrnn\.LSTMState"):
        jaxrnn.conv_lstm_step(params, carry.h, jnp.ones((2, 5, 5, 3)))
    with pytest.raises(TypeError, match="x: expected a floating-point array"):
        jaxrnn.conv_lstm_step(params, carry, jnp.ones((2, 5, 5, 3), jnp.int32))
    with pytest.raises(ValueError, match=r"xs: expected feature size 3"):
        jaxrnn.scan(jaxrnn.conv_lstm_step, params, jnp.ones((4, 2, 5, 5, 2)))
    mgu = random_like(jax.eval_shape(lambda k: jaxrnn.mgu_init(k, 3, 4), KEY))
    with pytest.raises(ValueError, match=r"params\.b_h: expected shape \(4,\)"):
        jaxrnn.mgu_step(
            jaxrnn.MGUParams(mgu.w_x, mgu.w_h, mgu.b_x, mgu.b_x), jnp.zeros(4), jnp.ones(3)
        )
    with pytest.raises(ValueError, match=r"params\.w_x: expected a kernel of shape"):
        jaxrnn.conv_lstm_step(
            jaxrnn.ConvLSTMParams(mgu.w_x, mgu.w_h, mgu.b_x), carry, jnp.ones((2, 5, 5, 3))
        )
