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


def test_from_torch_refuses_a_module_on_the_meta_device():
    with pytest.raises(
        ValueError, match=r"module: its parameters \(weight_ih_l0, ...\) are on the meta"
    ):
        jaxrnn.interop.from_torch(nn.LSTM(3, 4, device="meta"))
    with pytest.raises(ValueError, match=r"module: .* meta device"):
        jaxrnn.interop.from_torch(nn.GRUCell(3, 4, device="meta"))


def test_from_torch_keeps_float64(x64):
    params = jaxrnn.interop.from_torch(nn.GRU(D, H, dtype=torch.float64))
    assert params.w_x.dtype == jnp.float64
    assert jaxrnn.interop.from_torch(nn.GRU(D, H), dtype=jnp.bfloat16).w_h.dtype == jnp.bfloat16


# LSTM with projection (proj_size): deep, bidirectional, packed -----------------------------

P = 3
# PyTorch's CPU kernel for projections says once that it falls back to its plain implementation.
pytestmark = pytest.mark.filterwarnings("ignore:LSTM with projections is not supported")


@pytest.mark.parametrize("bidirectional", [False, True])
def test_projected_lstm_parity_with_packed_sequences(bidirectional):
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    torch.manual_seed(4)
    module = nn.LSTM(D, H, num_layers=2, bidirectional=bidirectional, proj_size=P)
    directions = 2 if bidirectional else 1
    lengths = [9, 3, 6]
    xs, _, _, _ = inputs(5)
    g = torch.Generator().manual_seed(6)
    w_ys = torch.randn(T, B, directions * P, generator=g)
    w_h, w_c = (
        torch.randn(2 * directions, B, P, generator=g),
        torch.randn(2 * directions, B, H, generator=g),
    )

    xs_t = xs.clone().requires_grad_(True)
    packed = pack_padded_sequence(xs_t, torch.tensor(lengths), enforce_sorted=False)
    out, (h_n, c_n) = module(packed)
    ys_t = pad_packed_sequence(out, total_length=T)[0]
    ((ys_t * w_ys).sum() + (h_n * w_h).sum() + (c_n * w_c).sum()).backward()

    layers = jaxrnn.interop.from_torch(module)
    assert layers[1][0].w_x.shape == (directions * P, 4 * H) and layers[1][0].w_r.shape == (H, P)

    def loss(layers, xs):
        carry, ys = jaxrnn.stack_scan(jaxrnn.lstm_step, layers, xs, lengths=jnp.array(lengths))
        states = [state for layer in carry for state in layer]  # PyTorch's order: layer, direction
        h = jnp.stack([s.h for s in states])
        c = jnp.stack([s.c for s in states])
        value = jnp.sum(ys * w_ys.numpy()) + jnp.sum(h * w_h.numpy()) + jnp.sum(c * w_c.numpy())
        return value, (ys, h, c)

    run = jax.jit(jax.value_and_grad(loss, (0, 1), has_aux=True))
    (_, (ys, h, c)), (g_layers, g_xs) = run(layers, jnp.asarray(xs.numpy()))
    close(ys, ys_t.detach())
    close(h, h_n.detach())
    close(c, c_n.detach())
    close(g_xs, xs_t.grad)
    for k in range(2):
        for j, suffix in enumerate(("", "_reverse")[:directions]):
            grad = lambda name, s=f"_l{k}{suffix}": getattr(module, name + s).grad
            g = g_layers[k][j]
            close(g.w_x, grad("weight_ih").T)
            close(g.w_h, grad("weight_hh").T)
            close(g.w_r, grad("weight_hr").T)
            close(g.b, grad("bias_ih"))
            close(g.b, grad("bias_hh"))
    # And back: to_torch(layers) is the same module.
    back = jaxrnn.interop.to_torch(layers)
    assert back.proj_size == P
    with torch.no_grad():
        again = pad_packed_sequence(back(packed)[0], total_length=T)[0]
    close(again, ys_t.detach())
    jax.tree.map(close, jaxrnn.interop.from_torch(back), layers)


def test_projected_lstm_one_layer_converts_to_params_and_back():
    torch.manual_seed(7)
    module = nn.LSTM(D, H, proj_size=P)
    params = jaxrnn.interop.from_torch(module)
    assert isinstance(params, jaxrnn.LSTMParams) and params.proj_size == P
    assert (params.hidden_size, params.output_size) == (H, P)
    xs, _, _, _ = inputs(8)
    with torch.no_grad():
        want, (h_n, c_n) = module(xs)
    carry, ys = jaxrnn.scan(jaxrnn.lstm_step, params, jnp.asarray(xs.numpy()))
    close(ys, want)
    close(carry.h, h_n[0])
    close(carry.c, c_n[0])
    with torch.no_grad():
        close(jaxrnn.interop.to_torch(params)(xs)[0], want)


# to_torch: every layer and direction must fit one PyTorch module ----------------------------


KEY = jax.random.key(0)


def _lstm_stack():
    return jaxrnn.stack_init(KEY, jaxrnn.lstm_init, D, H, num_layers=2, bidirectional=True)


def _lstm(d, **options):
    return jaxrnn.lstm_init(KEY, d, H, **options)


# case -> (a function building what PyTorch cannot hold, error type, message)
REFUSED = {
    "tanh_then_relu": (
        lambda: (
            jaxrnn.stack_init(KEY, jaxrnn.rnn_init, D, H)[0],
            (jaxrnn.rnn_init(KEY, H, H, activation="relu"),),
        ),
        ValueError,
        r"layers\[1\]\[0\]: activation 'relu' differs from layers\[0\]\[0\]'s 'tanh'",
    ),
    "gru_backward_reset_before": (
        lambda: ((jaxrnn.gru_init(KEY, D, H, reset_after=True), jaxrnn.gru_init(KEY, D, H)),),
        ValueError,
        r"layers\[0\]\[1\]: PyTorch's GRU is the reset_after=True form",
    ),
    "ragged": (
        lambda: (_lstm_stack()[0], _lstm_stack()[1][:1]),
        ValueError,
        r"layers\[1\]: has 1 direction\(s\) but layers\[0\] has 2",
    ),
    "cell_types": (
        lambda: (
            _lstm_stack()[0],
            (_lstm(2 * H), jaxrnn.gru_init(KEY, 2 * H, H, reset_after=True)),
        ),
        TypeError,
        r"layers\[1\]\[1\]: expected LSTMParams like layers\[0\]\[0\], got GRUParams",
    ),
    "input_size": (
        lambda: (_lstm_stack()[0], (_lstm(D + 1), _lstm(2 * H))),
        ValueError,
        r"layers\[1\]\[0\]: input size 6, expected 14 \(the previous layer's 2 x 7",
    ),
    "hidden_size": (
        lambda: ((_lstm(D), jaxrnn.lstm_init(KEY, D, H + 1)),),
        ValueError,
        r"layers\[0\]\[1\]: hidden_size 8 differs from layers\[0\]\[0\]'s 7",
    ),
    "proj_size": (
        lambda: ((_lstm(D, proj_size=3), _lstm(D, proj_size=2)),),
        ValueError,
        r"layers\[0\]\[1\]: proj_size 2 differs from layers\[0\]\[0\]'s 3",
    ),
    "dtype": (
        lambda: ((_lstm(D), _lstm(D, dtype=jnp.float16)),),
        ValueError,
        r"layers\[0\]\[1\]: dtype 'float16' differs from layers\[0\]\[0\]'s 'float32'",
    ),
    "gru_layer_norm": (
        lambda: jaxrnn.gru_init(KEY, D, H, reset_after=True, layer_norm=True),
        ValueError,
        r"params: layer_norm=True has no PyTorch equivalent",
    ),
}
# The LSTM variants PyTorch has no module for, alone and in a deeper layer.
for _option, _value in {
    "peephole": True,
    "layer_norm": True,
    "coupled": True,
    "cell_clip": 3.0,
}.items():
    _message = rf"{_option}={_value!r} has no PyTorch equivalent \(torch.nn.LSTM has no {_option}\)"
    REFUSED[_option] = (
        lambda o=_option, v=_value: _lstm(D, **{o: v}),
        ValueError,
        "params: " + _message,
    )
    REFUSED[f"{_option}_deeper"] = (
        lambda o=_option, v=_value: ((_lstm(D),), (_lstm(H, **{o: v}),)),
        ValueError,
        r"layers\[1\]\[0\]: " + _message,
    )


@pytest.mark.parametrize("case", REFUSED)
def test_to_torch_refuses_what_pytorch_cannot_hold(case):
    build, error, message = REFUSED[case]
    layers = build()
    with pytest.raises(error, match=message):
        jaxrnn.interop.to_torch(layers)
