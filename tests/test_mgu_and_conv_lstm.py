"""The MGU and the ConvLSTM beyond the conformance suite: their inits, the MGU's gradient
with respect to a recurrent mask, the ConvLSTM's batch-major images, and bad input."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.test_util import check_grads

import jaxrnn
from tests.helpers import (
    CASES,
    binary_mask,
    close,
    loss_weights,
    make,
    normal,
    random_carry,
    random_like,
    tree_close,
)

D, H = 4, 5
KEY = jax.random.key(0)


@pytest.mark.parametrize("case", ["mgu", "mgu_no_reset_gate", "conv_lstm_1d"])
def test_step_gradients_to_second_order(case, x64):
    spatial = CASES[case].spatial
    params = make(case, 2, 3, dtype=jnp.float64)
    carry = random_carry(params, 1, (2, *spatial))
    x = normal(2, (2, *spatial, 2), jnp.float64)
    check_grads(jax.jit(CASES[case].step), (params, carry, x), order=2, modes=["rev"])


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


def test_mgu_fused_gradient_of_the_recurrent_mask():
    params, carry = make("mgu", D, H), random_carry(make("mgu", D, H), 5, (3,))
    xs, mask = normal(4, (7, 3, D)), binary_mask(7, (3, H))
    lengths = jnp.array([4, 0, 9])

    def run(gradient):
        def f(p, c, xs, m):
            s = functools.partial(jaxrnn.mgu_step, recurrent_mask=m)
            out = jaxrnn.scan(s, p, xs, carry=c, gradient=gradient, lengths=lengths)
            return loss_weights(*out[::-1])

        return jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2, 3)))(params, carry, xs, mask)

    tree_close(run("rule"), run("autodiff"), 1e-4, 1e-5)


# Modules ------------------------------------------------------------------------------------


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
