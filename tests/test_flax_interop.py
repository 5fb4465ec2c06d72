"""jaxrnn.interop.from_flax: every Flax cell, run by ``nn.RNN``/``nnx.RNN``, against jaxrnn.scan.

Flax's parameters are filled with random numbers (biases included, so that every
bias path counts, and the ConvLSTM's built-in +1 on the forget gate is visible).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from flax import nnx

import jaxrnn
from tests.helpers import normal, random_like

D, H, T, B = 3, 4, 6, 2

# case -> (cell, jaxrnn step, spatial shape)
LINEN = {
    "simple": (lambda: nn.SimpleCell(H), jaxrnn.rnn_step, ()),
    "simple_relu": (lambda: nn.SimpleCell(H, activation_fn=nn.relu), jaxrnn.rnn_step, ()),
    "lstm": (lambda: nn.LSTMCell(H), jaxrnn.lstm_step, ()),
    "optimized_lstm": (lambda: nn.OptimizedLSTMCell(H), jaxrnn.lstm_step, ()),
    "gru": (lambda: nn.GRUCell(H), jaxrnn.gru_step, ()),
    "mgu": (lambda: nn.MGUCell(H), jaxrnn.mgu_step, ()),
    "mgu_no_reset": (lambda: nn.MGUCell(H, reset_gate=False), jaxrnn.mgu_step, ()),
    "conv1d": (lambda: nn.ConvLSTMCell(H, kernel_size=(3,)), jaxrnn.conv_lstm_step, (5,)),
    "conv2d_even": (lambda: nn.ConvLSTMCell(H, kernel_size=(3, 2)), jaxrnn.conv_lstm_step, (4, 3)),
}
NNX = {
    "simple": (nnx.SimpleCell, jaxrnn.rnn_step),
    "lstm": (nnx.LSTMCell, jaxrnn.lstm_step),
    "optimized_lstm": (nnx.OptimizedLSTMCell, jaxrnn.lstm_step),
    "gru": (nnx.GRUCell, jaxrnn.gru_step),
}


def as_jaxrnn_carry(carry):
    """Flax's LSTM carry is (c, h)."""
    if isinstance(carry, tuple):
        c, h = carry
        return jaxrnn.LSTMState(h=h, c=c)
    return carry


def assert_same(flax_out, jaxrnn_out):
    (flax_carry, flax_ys), (carry, ys) = flax_out, jaxrnn_out
    np.testing.assert_allclose(jnp.swapaxes(ys, 0, 1), flax_ys, rtol=1e-5, atol=1e-5)
    flax_carry = as_jaxrnn_carry(flax_carry)
    assert jax.tree.structure(carry) == jax.tree.structure(flax_carry)
    for a, b in zip(jax.tree.leaves(carry), jax.tree.leaves(flax_carry), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", LINEN)
def test_linen_cells(case):
    make_cell, step, spatial = LINEN[case]
    cell = make_cell()
    x = normal(0, (B, T, *spatial, D))  # batch-major, as nn.RNN takes it
    rnn = nn.RNN(cell, return_carry=True)
    variables = random_like(jax.eval_shape(rnn.init, jax.random.key(0), x), seed=1)
    params = jaxrnn.interop.from_flax(cell, variables["params"]["cell"])
    assert type(params) is jaxrnn.get_cell(step.__name__.removesuffix("_step")).params_type
    got = jax.jit(lambda p, xs: jaxrnn.scan(step, p, xs))(params, jnp.swapaxes(x, 0, 1))
    assert_same(jax.jit(rnn.apply)(variables, x), got)
    if case == "conv2d_even":  # the whole variables are read as well
        got = jaxrnn.interop.from_flax(cell, variables)
        jax.tree.map(np.testing.assert_array_equal, got, params)


def random_nnx(cls, seed=1):
    """An NNX cell whose parameters are random numbers (initialising would compile)."""
    abstract = nnx.eval_shape(lambda: cls(D, H, rngs=nnx.Rngs(0)))
    graph, state = nnx.split(abstract)
    return nnx.merge(graph, random_like(state, seed))


@pytest.mark.parametrize("case", NNX)
def test_nnx_cells(case):
    cls, step = NNX[case]
    cell = random_nnx(cls)
    x = normal(0, (B, T, D))
    params = jaxrnn.interop.from_flax(cell)
    got = jax.jit(lambda p, xs: jaxrnn.scan(step, p, xs))(params, jnp.swapaxes(x, 0, 1))
    assert_same(nnx.RNN(cell, return_carry=True)(x), got)


def test_refusals_name_the_attribute():
    convert = jaxrnn.interop.from_flax
    x = jnp.ones((1, 2, D))

    def params_of(cell):
        return random_like(jax.eval_shape(nn.RNN(cell).init, jax.random.key(0), x))["params"][
            "cell"
        ]

    lstm = params_of(nn.LSTMCell(H))
    with pytest.raises(ValueError, match=r"cell\.gate_fn: .* default \(sigmoid\) .* got tanh"):
        convert(nn.LSTMCell(H, gate_fn=nn.tanh), lstm)
    with pytest.raises(
        ValueError, match=r"cell\.dtype: expected None or the params' dtype float32"
    ):
        convert(nn.LSTMCell(H, dtype=jnp.bfloat16), lstm)
    simple = params_of(nn.SimpleCell(H))
    with pytest.raises(ValueError, match=r"cell\.residual: .* expected False, got True"):
        convert(nn.SimpleCell(H, residual=True), simple)
    with pytest.raises(ValueError, match=r"cell\.activation_fn: .* got gelu"):
        convert(nn.SimpleCell(H, activation_fn=nn.gelu), simple)
    with pytest.raises(ValueError, match=r"cell\.activation_fn: .* got relu"):
        convert(random_nnx(lambda d, h, rngs: nnx.GRUCell(d, h, activation_fn=nnx.relu, rngs=rngs)))
    conv = {
        "ih": {"kernel": jnp.ones((3, 3, D, 4 * H))},
        "hh": {"kernel": jnp.ones((3, 3, H, 4 * H))},
    }
    with pytest.raises(ValueError, match=r"cell\.strides: .* stride 1, got \(2, 2\)"):
        convert(nn.ConvLSTMCell(H, (3, 3), strides=(2, 2)), conv)
    with pytest.raises(ValueError, match=r"cell\.padding: .* 'SAME', got 'VALID'"):
        convert(nn.ConvLSTMCell(H, (3, 3), padding="VALID"), conv)
    with pytest.raises(ValueError, match=r"params: expected 'ih/bias'"):
        convert(nn.ConvLSTMCell(H, (3, 3)), conv)  # use_bias=True, but no biases


def test_careless_calls():
    convert = jaxrnn.interop.from_flax
    with pytest.raises(TypeError, match=r"cell: expected one of flax\.linen\.SimpleCell, .* got "):
        convert(nn.Dense(3), {})
    with pytest.raises(TypeError, match=r"got flax\.linen\.recurrent\.RNN"):
        convert(nn.RNN(nn.GRUCell(H)), {})
    with pytest.raises(ValueError, match=r"params: a Linen GRUCell holds no parameters"):
        convert(nn.GRUCell(H))
    with pytest.raises(TypeError, match=r"params: expected the parameter dict .* got Array"):
        convert(nn.GRUCell(H), jnp.ones(3))
    gru = random_like(
        jax.eval_shape(nn.RNN(nn.GRUCell(H)).init, jax.random.key(0), jnp.ones((1, 2, D)))
    )["params"]["cell"]
    missing = {k: v for k, v in gru.items() if k != "hn"}
    with pytest.raises(
        ValueError, match=r"params: expected 'hn/\w+' in the parameters of a flax\.linen\.GRUCell"
    ):
        convert(nn.GRUCell(H), missing)
    no_bias = dict(gru) | {"hn": {"kernel": gru["hn"]["kernel"]}}
    with pytest.raises(ValueError, match=r"params: expected 'hn/bias' .* but hn has \['kernel'\]"):
        convert(nn.GRUCell(H), no_bias)
    wrong = dict(gru) | {"hn": {"kernel": gru["hn"]["kernel"][:, :2], "bias": gru["hn"]["bias"]}}
    with pytest.raises(ValueError, match=r"params\.w_h: expected shape \(4, 12\)"):
        convert(nn.GRUCell(H), wrong)
    with pytest.raises(TypeError, match=r"params: an NNX GRUCell holds its own parameters"):
        convert(random_nnx(nnx.GRUCell), gru)
