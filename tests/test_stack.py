"""Deep and bidirectional stacks: by hand, against PyTorch's packed sequences, and dropout.

Every cell's bidirectional stack is held to NumPy in ``tests/conformance``.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn
from tests.helpers import CASES

D, H = 4, 5
KINDS = ("rnn_tanh", "lstm", "gru")


def close(a, b, tol=2e-5):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=tol, atol=tol)


def first_h(carry):
    return carry.h if isinstance(carry, jaxrnn.LSTMState) else carry


def test_stack_layer_sizes_and_keys():
    layers = jaxrnn.stack_init(
        jax.random.key(0), jaxrnn.lstm_init, 3, 6, num_layers=2, bidirectional=True, forget_bias=2.0
    )
    assert [p.w_x.shape for layer in layers for p in layer] == [
        (3, 24),
        (3, 24),
        (12, 24),
        (12, 24),
    ]
    assert float(layers[1][1].b[6:12].mean()) == 2.0
    flat = [p.w_h for layer in layers for p in layer]
    assert all(not np.allclose(a, b) for i, a in enumerate(flat) for b in flat[i + 1 :])


def test_stack_takes_any_step_and_init_pair():
    def init(key, d, h):
        return {"w": jax.random.normal(key, (d, h)) / np.sqrt(d), "decay": jnp.array(0.5)}

    def step(params, carry, x):
        h = params["decay"] * carry + jnp.tanh(x @ params["w"])
        return h, h

    layers = jaxrnn.stack_init(jax.random.key(0), init, D, H, num_layers=2, bidirectional=True)
    xs = jax.random.normal(jax.random.key(1), (6, 3, D))
    carry = tuple(tuple(jnp.zeros((3, H)) for _ in range(2)) for _ in range(2))
    final, ys = jaxrnn.stack_scan(step, layers, xs, carry=carry, lengths=jnp.array([6, 2, 4]))
    # Layer by layer with jaxrnn.scan, by hand.
    inputs = xs
    for k in range(2):
        fwd = jaxrnn.scan(
            step, layers[k][0], inputs, carry=carry[k][0], lengths=jnp.array([6, 2, 4])
        )
        bwd = jaxrnn.scan(
            step,
            layers[k][1],
            inputs,
            carry=carry[k][1],
            lengths=jnp.array([6, 2, 4]),
            reverse=True,
        )
        close(final[k][0], fwd[0])
        close(final[k][1], bwd[0])
        inputs = jnp.concatenate([fwd[1], bwd[1]], axis=-1)
    close(ys, inputs)
    with pytest.raises(
        TypeError, match="recurrent_dropout: needs a step that takes a recurrent_mask keyword"
    ):
        jaxrnn.stack_scan(
            step, layers, xs, carry=carry, recurrent_dropout=0.5, key=jax.random.key(0)
        )


def test_dropout_only_with_a_key_and_only_between_layers():
    layers = jaxrnn.stack_init(jax.random.key(0), jaxrnn.gru_init, D, H, num_layers=2)
    xs = jax.random.normal(jax.random.key(1), (5, 3, D))
    _, plain = jaxrnn.stack_scan(jaxrnn.gru_step, layers, xs)
    _, no_key = jaxrnn.stack_scan(jaxrnn.gru_step, layers, xs, dropout=0.5, recurrent_dropout=0.5)
    close(no_key, plain, 0)
    _, dropped = jaxrnn.stack_scan(jaxrnn.gru_step, layers, xs, dropout=0.5, key=jax.random.key(2))
    assert not np.allclose(dropped, plain)
    # One layer: nothing lies between layers, so `dropout` changes nothing (as in PyTorch).
    _, one = jaxrnn.stack_scan(jaxrnn.gru_step, layers[:1], xs, dropout=0.5, key=jax.random.key(2))
    close(one, jaxrnn.stack_scan(jaxrnn.gru_step, layers[:1], xs)[1], 0)


def test_recurrent_dropout_mask_is_fixed_per_sequence():
    """A step that outputs the mask it receives shows one mask per sequence, for all steps."""
    seen = []

    def init(key, d, h):
        del key
        return {"w": jnp.zeros((d, h))}

    def step(params, carry, x, *, recurrent_mask=None):
        seen.append(recurrent_mask is not None)
        return carry, recurrent_mask + 0 * (x @ params["w"])

    layers = jaxrnn.stack_init(jax.random.key(0), init, D, 64, num_layers=2, bidirectional=True)
    carry = tuple(tuple(jnp.zeros((8, 64)) for _ in range(2)) for _ in range(2))
    xs = jnp.ones((6, 8, D))
    _, ys = jaxrnn.stack_scan(
        step, layers, xs, carry=carry, recurrent_dropout=0.25, key=jax.random.key(1)
    )
    assert all(seen)
    ys = np.asarray(ys)
    np.testing.assert_array_equal(ys, np.broadcast_to(ys[:1], ys.shape))  # same at every step
    assert set(np.unique(ys)) <= {0.0, np.float32(1 / 0.75)}  # inverted dropout
    assert 0.15 < (ys[0] == 0).mean() < 0.35
    assert not np.array_equal(ys[0, 0], ys[0, 1])  # differs across sequences
    assert not np.array_equal(ys[0, 0, :64], ys[0, 0, 64:])  # and directions


def test_dropout_gradients_flow():
    layers = jaxrnn.stack_init(jax.random.key(0), jaxrnn.lstm_init, D, H, num_layers=2)
    xs = jax.random.normal(jax.random.key(1), (5, 2, D))
    loss = lambda layers: jaxrnn.stack_scan(
        jaxrnn.lstm_step, layers, xs, dropout=0.3, recurrent_dropout=0.3, key=jax.random.key(3)
    )[1].sum()
    grads = jax.jit(jax.grad(loss))(layers)
    assert all(
        bool(jnp.isfinite(g).all()) and float(jnp.abs(g).sum()) > 0 for g in jax.tree.leaves(grads)
    )


def test_stack_bad_input():
    layers = jaxrnn.stack_init(
        jax.random.key(0), jaxrnn.lstm_init, D, H, num_layers=2, bidirectional=True
    )
    xs = jnp.ones((5, 3, D))
    step = jaxrnn.lstm_step
    with pytest.raises(ValueError, match=r"dropout: expected a rate in \[0, 1\), got 1.0"):
        jaxrnn.stack_scan(step, layers, xs, dropout=1.0)
    with pytest.raises(
        ValueError, match=r"recurrent_dropout: expected a rate in \[0, 1\), got -0.1"
    ):
        jaxrnn.stack_scan(step, layers, xs, recurrent_dropout=-0.1)
    wrong = ((jaxrnn.initial_carry(layers[0][0], (3,)),),) * 2
    with pytest.raises(
        ValueError,
        match=r"carry: expected a tuple of 2 layers, each a tuple of 2 direction carries .* "
        r"got 2 layers with directions \[1, 1\]",
    ):
        jaxrnn.stack_scan(step, layers, xs, carry=wrong)
    with pytest.raises(ValueError, match=r"lengths: expected shape \(3,\)"):
        jaxrnn.stack_scan(step, layers, xs, lengths=jnp.array([1, 2]))
    with pytest.raises(ValueError, match=r"xs: expected feature size 4"):
        jaxrnn.stack_scan(step, layers, jnp.ones((5, 3, D + 1)))
    with pytest.raises(ValueError, match="layers: expected a non-empty tuple"):
        jaxrnn.stack_scan(step, layers[0][0], xs)
    with pytest.raises(ValueError, match="num_layers: expected a positive int, got 0"):
        jaxrnn.stack_init(jax.random.key(0), jaxrnn.lstm_init, D, H, num_layers=0)


torch = pytest.importorskip("torch")
TORCH = {"rnn_tanh": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}


@pytest.mark.parametrize("bidirectional", [pytest.param(False, marks=pytest.mark.slow), True])
@pytest.mark.parametrize("kind", TORCH)
def test_torch_packed_sequences_parity(kind, bidirectional):
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    torch.manual_seed(0)
    module = TORCH[kind](D, H, num_layers=2, bidirectional=bidirectional)
    T, B = 8, 5
    lengths = [8, 3, 5, 1, 6]
    xs = torch.randn(T, B, D)
    packed = pack_padded_sequence(xs, torch.tensor(lengths), enforce_sorted=False)
    out, state = module(packed)
    ys_t, _ = pad_packed_sequence(out, total_length=T)
    h_n = state[0] if kind == "lstm" else state

    layers = jaxrnn.interop.from_torch(module)
    step = CASES[kind].step
    carry, ys = jaxrnn.stack_scan(step, layers, jnp.asarray(xs.numpy()), lengths=jnp.array(lengths))
    close(ys, ys_t.detach())
    directions = 2 if bidirectional else 1
    for k in range(2):
        for j in range(directions):
            close(first_h(carry[k][j]), h_n[k * directions + j].detach())
            if kind == "lstm":
                close(carry[k][j].c, state[1][k * directions + j].detach())
    # And back: to_torch(layers) reproduces the module.
    again = jaxrnn.interop.to_torch(layers)(packed)[0]
    close(pad_packed_sequence(again, total_length=T)[0].detach(), ys_t.detach())


@pytest.mark.parametrize("kind", KINDS)
def test_stack_step_scanned_equals_stack_scan(kind):
    step = CASES[kind].step
    layers = jaxrnn.stack_init(jax.random.key(5), CASES[kind].cell, D, H, num_layers=3)
    xs = jax.random.normal(jax.random.key(6), (6, 2, D))
    carry = jax.tree.map(lambda a: a + 0.2, jaxrnn.initial_carry(layers, (2,)))
    got = jax.lax.scan(functools.partial(jaxrnn.stack_step, step, layers), carry, xs)
    want = jaxrnn.stack_scan(step, layers, xs, carry=carry)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        close(a, b)


def test_initial_carry_of_layers_and_stack_step_errors():
    layers = jaxrnn.stack_init(
        jax.random.key(0), jaxrnn.lstm_init, D, H, num_layers=2, bidirectional=True
    )
    carry = jaxrnn.initial_carry(layers, (3,))
    assert [[c.h.shape for c in layer] for layer in carry] == [[(3, H), (3, H)]] * 2
    with pytest.raises(ValueError, match="layers: stack_step needs one direction per layer"):
        jaxrnn.stack_step(jaxrnn.lstm_step, layers, carry, jnp.ones((3, D)))
    one_way = tuple(layer[:1] for layer in layers)
    with pytest.raises(ValueError, match="carry: expected a tuple of 2 layers, each a tuple of 1"):
        jaxrnn.stack_step(jaxrnn.lstm_step, one_way, carry, jnp.ones((3, D)))
