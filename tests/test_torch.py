"""Parity with PyTorch's modules: outputs, final states, and gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn

torch = pytest.importorskip("torch")
nn = torch.nn

T, B, D, H = 9, 3, 5, 7
close = lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-5, atol=2e-5)

MODULES = {
    "rnn_tanh": (lambda: nn.RNN(D, H, nonlinearity="tanh"), jaxrnn.rnn_step),
    "rnn_relu": (lambda: nn.RNN(D, H, nonlinearity="relu"), jaxrnn.rnn_step),
    "lstm": (lambda: nn.LSTM(D, H), jaxrnn.lstm_step),
    "gru": (lambda: nn.GRU(D, H), jaxrnn.gru_step),
}
CELL_MODULES = {
    "rnn_tanh": (lambda: nn.RNNCell(D, H), jaxrnn.rnn_step),
    "rnn_relu": (lambda: nn.RNNCell(D, H, nonlinearity="relu"), jaxrnn.rnn_step),
    "lstm": (lambda: nn.LSTMCell(D, H), jaxrnn.lstm_step),
    "gru": (lambda: nn.GRUCell(D, H), jaxrnn.gru_step),
}


def inputs(seed):
    g = torch.Generator().manual_seed(seed)
    xs = torch.randn(T, B, D, generator=g)
    h0 = 0.5 * torch.randn(B, H, generator=g)
    c0 = 0.5 * torch.randn(B, H, generator=g)
    weights = torch.randn(T, B, H, generator=g)  # makes the loss depend on every output
    return xs, h0, c0, weights


def jax_carry(name, h0, c0):
    h0 = jnp.asarray(h0.numpy())
    return jaxrnn.LSTMState(h0, jnp.asarray(c0.numpy())) if name == "lstm" else h0


@pytest.mark.parametrize("name", MODULES)
def test_module_parity(name):
    torch.manual_seed(0)
    make_module, step = MODULES[name]
    module = make_module()
    xs, h0, c0, weights = inputs(1)
    params = jaxrnn.interop.from_torch(module)

    xs_t = xs.clone().requires_grad_(True)
    state0 = (h0[None], c0[None]) if name == "lstm" else h0[None]
    ys_t, state_t = module(xs_t, state0)
    (ys_t * weights).sum().backward()

    def loss(params, xs):
        carry, ys = jaxrnn.scan(step, params, xs, carry=jax_carry(name, h0, c0))
        return jnp.sum(ys * jnp.asarray(weights.numpy())), (carry, ys)

    (_, (carry, ys)), (g_params, g_xs) = jax.value_and_grad(loss, (0, 1), has_aux=True)(
        params, jnp.asarray(xs.numpy())
    )
    close(ys, ys_t.detach())
    if name == "lstm":
        close(carry.h, state_t[0][0].detach())
        close(carry.c, state_t[1][0].detach())
    else:
        close(carry, state_t[0].detach())
    close(g_xs, xs_t.grad)
    close(g_params.w_x, module.weight_ih_l0.grad.T)
    close(g_params.w_h, module.weight_hh_l0.grad.T)
    if name == "gru":
        close(g_params.b_x, module.bias_ih_l0.grad)
        close(g_params.b_h, module.bias_hh_l0.grad)
    else:
        close(g_params.b, module.bias_ih_l0.grad)


@pytest.mark.parametrize("name", CELL_MODULES)
def test_cell_parity(name):
    torch.manual_seed(1)
    make_module, step = CELL_MODULES[name]
    module = make_module()
    xs, h0, c0, _ = inputs(2)
    params = jaxrnn.interop.from_torch(module)
    x = xs[0].clone().requires_grad_(True)
    out = module(x, (h0, c0) if name == "lstm" else h0)
    h_t = out[0] if name == "lstm" else out
    h_t.pow(2).sum().backward()

    def loss(x):
        carry, y = step(params, jax_carry(name, h0, c0), x)
        return jnp.sum(y**2), carry

    (_, carry), g_x = jax.value_and_grad(loss, has_aux=True)(jnp.asarray(xs[0].numpy()))
    close(jax.tree.leaves(carry)[0], h_t.detach())
    if name == "lstm":
        close(carry.c, out[1].detach())
    close(g_x, x.grad)


def test_gru_converts_to_reset_after_and_bias_free_modules():
    assert jaxrnn.interop.from_torch(nn.GRU(D, H)).reset_after is True
    params = jaxrnn.interop.from_torch(nn.LSTM(D, H, bias=False))
    np.testing.assert_array_equal(params.b, 0.0)
    assert params.b.shape == (4 * H,)


@pytest.mark.parametrize("name", ["rnn_relu", "lstm", "gru"])
def test_to_torch_round_trip(name):
    torch.manual_seed(3)
    module = MODULES[name][0]()
    params = jaxrnn.interop.from_torch(module)
    back = jaxrnn.interop.to_torch(params)
    xs = torch.randn(T, B, D)
    with torch.no_grad():
        close(back(xs)[0], module(xs)[0])
    again = jaxrnn.interop.from_torch(back)
    jax.tree.map(close, again, params)
    assert jax.tree.structure(again) == jax.tree.structure(params)


def test_to_torch_rejects_classic_gru():
    params = jaxrnn.gru_init(jax.random.key(0), D, H)
    with pytest.raises(ValueError, match="reset_after=True"):
        jaxrnn.interop.to_torch(params)


def test_deep_bidirectional_module_gives_layers():
    layers = jaxrnn.interop.from_torch(nn.LSTM(D, H, num_layers=2, bidirectional=True))
    assert len(layers) == 2 and all(len(layer) == 2 for layer in layers)
    assert layers[0][0].w_x.shape == (D, 4 * H)
    assert layers[1][1].w_x.shape == (2 * H, 4 * H)


def test_from_torch_rejects_other_modules():
    with pytest.raises(TypeError, match=r"module: expected torch\.nn\.RNN/LSTM/GRU"):
        jaxrnn.interop.from_torch(nn.Linear(3, 4))
    with pytest.raises(ValueError, match="proj_size must be 0, got 3"):
        jaxrnn.interop.from_torch(nn.LSTM(D, H, proj_size=3))


def test_from_torch_keeps_float64(x64):
    params = jaxrnn.interop.from_torch(nn.GRU(D, H, dtype=torch.float64))
    assert params.w_x.dtype == jnp.float64
    assert jaxrnn.interop.from_torch(nn.GRU(D, H), dtype=jnp.bfloat16).w_h.dtype == jnp.bfloat16
