"""NNX and Linen modules against the functional core they wrap."""

import functools
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from flax import nnx

import jaxrnn

D, H = 3, 5
STEPS = {"RNN": jaxrnn.rnn_step, "LSTM": jaxrnn.lstm_step, "GRU": jaxrnn.gru_step}
OPTIONS = {
    "RNN": {"activation": "relu"},
    "LSTM": {"forget_bias": 0.5},
    "GRU": {"reset_after": True},
}


def close(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-6, atol=1e-6)


def batch_major(ys):
    return jnp.moveaxis(ys, 0, -2)


def inputs():
    x = jax.random.normal(jax.random.key(1), (2, 3, 7, D))  # two batch axes, T=7
    lengths = jnp.array([[7, 2, 5], [1, 0, 6]])
    return x, lengths


@pytest.mark.parametrize("name", ["RNN", "LSTM", "GRU"])
def test_cells_equal_steps(name):
    x = jax.random.normal(jax.random.key(2), (4, D))
    cell = getattr(jaxrnn.nnx, name + "Cell")(D, H, rngs=nnx.Rngs(0))
    carry = jax.tree.map(lambda a: a + 0.3, cell.initial_carry((4,)))
    close(cell(carry, x), STEPS[name](cell.to_params(), carry, x))
    close(type(cell).from_params(cell.to_params())(carry, x), cell(carry, x))

    linen_cell = getattr(jaxrnn.linen, name + "Cell")(H)
    carry = linen_cell.initial_carry((4,))
    close(carry, jaxrnn.initial_carry(cell.to_params(), (4,)))
    variables = linen_cell.init(jax.random.key(0), carry, x)
    params = type(linen_cell).to_params(variables)
    close(linen_cell.apply(variables, carry, x), STEPS[name](params, carry, x))
    # Scanning a Linen cell with nn.scan gives jaxrnn.scan's numbers.
    xs = jax.random.normal(jax.random.key(3), (6, 4, D))
    scanned = nn.scan(type(linen_cell), variable_broadcast="params", split_rngs={"params": False})(
        H
    )
    close(scanned.apply(variables, carry, xs), jaxrnn.scan(STEPS[name], params, xs, carry=carry))


def test_nnx_train_eval_switch_and_no_key_in_state():
    model = jaxrnn.nnx.LSTM(
        D, H, num_layers=2, dropout=0.5, recurrent_dropout=0.3, rngs=nnx.Rngs(0)
    )
    x = jax.random.normal(jax.random.key(4), (2, 6, D))
    plain = jaxrnn.stack_scan(jaxrnn.lstm_step, model.to_layers(), jnp.moveaxis(x, -2, 0))[1]
    a = model(x, rngs=nnx.Rngs(dropout=1))
    b = model(x, rngs=nnx.Rngs(dropout=2))
    assert not np.allclose(a, b) and not np.allclose(a, batch_major(plain))
    close(model(x, rngs=nnx.Rngs(dropout=1)), a)  # the key alone decides the masks
    with pytest.raises(
        ValueError,
        match=r"rngs: dropout=0.5 and recurrent_dropout=0.3 in training mode need nnx.Rngs",
    ):
        model(x)
    model.eval()
    close(model(x), batch_major(plain))
    model.train()
    assert model.deterministic is False
    # The saved state holds parameters only: no RNG key or counter.
    state = nnx.state(model)
    kinds = {
        type(v).__name__
        for v in jax.tree.leaves(state, is_leaf=lambda v: isinstance(v, nnx.Variable))
    }
    assert kinds == {"Param"}


def test_linen_dropout_needs_rng_when_not_deterministic():
    model = jaxrnn.linen.GRU(H, num_layers=2, dropout=0.5)
    x = jax.random.normal(jax.random.key(5), (2, 6, D))
    variables = model.init(jax.random.key(0), x, deterministic=True)
    det = model.apply(variables, x, deterministic=True)
    close(
        det,
        batch_major(
            jaxrnn.stack_scan(jaxrnn.gru_step, model.to_layers(variables), jnp.moveaxis(x, -2, 0))[
                1
            ]
        ),
    )
    train = model.apply(variables, x, deterministic=False, rngs={"dropout": jax.random.key(1)})
    assert not np.allclose(train, det)
    with pytest.raises(ValueError, match=r"rngs: dropout=0.5 .* need a 'dropout' RNG"):
        model.apply(variables, x, deterministic=False)


def test_modules_from_torch():
    torch = pytest.importorskip("torch")
    module = torch.nn.GRU(D, H, num_layers=2, bidirectional=True, batch_first=True)
    x = torch.randn(4, 9, D)
    want = module(x)[0].detach().numpy()
    layers = jaxrnn.interop.from_torch(module)
    np.testing.assert_allclose(
        jaxrnn.nnx.GRU.from_layers(layers)(jnp.asarray(x.numpy())), want, atol=2e-5
    )
    variables = jaxrnn.linen.GRU.variables_from_layers(layers)
    got = jaxrnn.linen.GRU(H, num_layers=2, bidirectional=True).apply(
        variables, jnp.asarray(x.numpy())
    )
    np.testing.assert_allclose(got, want, atol=2e-5)


def test_module_bad_input():
    model = jaxrnn.nnx.LSTM(D, H, num_layers=2, bidirectional=True, rngs=nnx.Rngs(0))
    with pytest.raises(
        ValueError, match=r"inputs: expected feature size 3 on the last axis, got shape \(2, 6, 4\)"
    ):
        model(jnp.ones((2, 6, D + 1)))
    with pytest.raises(ValueError, match=r"lengths: expected shape \(2,\) .* got \(3,\)"):
        model(jnp.ones((2, 6, D)), lengths=jnp.array([1, 2, 3]))
    one_layer = jaxrnn.nnx.LSTM(D, H, rngs=nnx.Rngs(0)).initial_carry((2,))
    with pytest.raises(ValueError, match=r"carry: expected a tuple of 2 layers, each a tuple of 2"):
        model(jnp.ones((2, 6, D)), carry=one_layer)
    for bad in (1.0, -0.5):
        with pytest.raises(ValueError, match=rf"dropout: expected a rate in \[0, 1\), got {bad}"):
            jaxrnn.nnx.GRU(D, H, dropout=bad, rngs=nnx.Rngs(0))
        with pytest.raises(ValueError, match=rf"dropout: expected a rate in \[0, 1\), got {bad}"):
            jaxrnn.linen.GRU(H, dropout=bad).init(jax.random.key(0), jnp.ones((1, 2, D)))
    linen = jaxrnn.linen.LSTM(H, deterministic=True)
    variables = linen.init(jax.random.key(0), jnp.ones((2, 6, D)))
    with pytest.raises(ValueError, match="inputs: expected feature size 3"):
        linen.apply(variables, jnp.ones((2, 6, D + 2)))
    with pytest.raises(
        TypeError,
        match="LSTM: unexpected option 'reset_after'; its cell options are forget_bias, proj_size",
    ):
        jaxrnn.nnx.LSTM(D, H, reset_after=True, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"rngs: expected nnx\.Rngs to initialise the parameters"):
        jaxrnn.nnx.LSTM(D, H)


def test_flax_loads_lazily():
    code = (
        "import sys, jaxrnn\n"
        "assert 'flax' not in sys.modules\n"
        "jaxrnn.nnx.LSTM, jaxrnn.linen.GRU\n"
        "assert 'flax' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.slow  # the fast lane's time: see README
def test_dtype_and_param_dtype_have_flax_meaning():
    """``dtype`` is the compute dtype, ``param_dtype`` the params' own; the modules run
    :func:`jaxrnn.stack_scan` under the same policy, so their outputs are its outputs."""
    bf16 = jnp.bfloat16
    x = jax.random.normal(jax.random.key(1), (2, 9, 3))  # (B, T, d)
    model = jaxrnn.nnx.LSTM(3, 4, num_layers=2, bidirectional=True, dtype=bf16, rngs=nnx.Rngs(0))
    layers = model.to_layers()
    assert all(a.dtype == jnp.float32 for a in jax.tree.leaves(layers))
    _, want = jaxrnn.stack_scan("lstm", layers, jnp.moveaxis(x, 1, 0), dtype=bf16)
    ys = model(x)
    assert ys.dtype == bf16
    np.testing.assert_array_equal(
        np.asarray(ys, np.float32), np.moveaxis(np.asarray(want, np.float32), 0, 1)
    )

    linen = jaxrnn.linen.GRU(4, dtype=bf16)
    variables = linen.init(jax.random.key(0), x)
    assert all(a.dtype == jnp.float32 for a in jax.tree.leaves(variables))
    _, want = jaxrnn.stack_scan(
        "gru", linen.to_layers(variables), jnp.moveaxis(x, 1, 0), dtype=bf16
    )
    np.testing.assert_array_equal(
        np.asarray(linen.apply(variables, x), np.float32),
        np.moveaxis(np.asarray(want, np.float32), 0, 1),
    )

    # param_dtype: the params as stored; with no dtype the computation is theirs.
    narrow = jaxrnn.nnx.GRU(3, 4, param_dtype=bf16, rngs=nnx.Rngs(0))
    assert all(a.dtype == bf16 for a in jax.tree.leaves(narrow.to_layers()))
    assert narrow(x.astype(bf16)).dtype == bf16
    variables = jaxrnn.linen.LSTM(4, param_dtype=bf16).init(jax.random.key(0), x.astype(bf16))
    assert all(a.dtype == bf16 for a in jax.tree.leaves(variables))

    # One step at a time: the same policy, a float32 carry.
    cell = jaxrnn.nnx.LSTMCell(3, 4, dtype=bf16, rngs=nnx.Rngs(0))
    carry, y = cell(cell.initial_carry((2,)), x[:, 0])
    assert (carry.c.dtype, y.dtype) == (jnp.float32, bf16)
    linen_cell = jaxrnn.linen.GRUCell(4, dtype=bf16)
    carry = linen_cell.initial_carry((2,))
    carry, y = linen_cell.apply(linen_cell.init(jax.random.key(0), carry, x[:, 0]), carry, x[:, 0])
    assert (carry.dtype, y.dtype) == (jnp.float32, bf16)

    with pytest.raises(TypeError, match="param_dtype: expected a real floating-point dtype"):
        jaxrnn.nnx.GRU(3, 4, param_dtype=jnp.int32, rngs=nnx.Rngs(0))
    with pytest.raises(TypeError, match="dtype: expected a real floating-point dtype"):
        jaxrnn.nnx.GRU(3, 4, dtype="int8", rngs=nnx.Rngs(0))
    with pytest.raises(TypeError, match=r"cell_options: .*compute dtype.*param_dtype"):
        jaxrnn.linen.Recurrent(4, cell="gru", cell_options={"dtype": bf16}).init(
            jax.random.key(0), x
        )


@pytest.mark.slow
def test_stack_scan_under_a_policy_with_dropout_and_zoneout():
    bf16 = jnp.bfloat16
    layers = jaxrnn.stack_init(jax.random.key(0), "lstm", 3, 4, num_layers=2, bidirectional=True)
    xs = jax.random.normal(jax.random.key(1), (7, 2, 3))

    def loss(layers, xs, **options):
        carry, ys = jaxrnn.stack_scan("lstm", layers, xs, dtype=bf16, **options)
        return jnp.sum(ys.astype(jnp.float32) ** 2), (carry, ys)

    for options in (
        {"dropout": 0.2, "recurrent_dropout": 0.2, "key": jax.random.key(2)},
        {"zoneout": 0.3, "key": jax.random.key(3)},
        {"zoneout": 0.3},
    ):
        run = jax.jit(jax.grad(functools.partial(loss, **options), has_aux=True))
        grads, (carry, ys) = run(layers, xs)
        assert ys.dtype == bf16, options
        assert all(a.dtype == jnp.float32 for a in jax.tree.leaves((carry, grads))), options
        assert all(np.isfinite(a).all() for a in jax.tree.leaves(grads)), options
    # Without options it equals the float32 stack within bfloat16's rounding.
    _, ys = jaxrnn.stack_scan("lstm", layers, xs, dtype=bf16)
    _, want = jaxrnn.stack_scan("lstm", layers, xs)
    np.testing.assert_allclose(np.asarray(ys, np.float32), want, atol=0.03)
