"""The LSTM variants and the layer-normalised GRU: what each option means beyond its equations.

Each variant is an option of ``lstm_init``/``gru_init`` and a row of the
conformance table, which holds it to NumPy, finite differences and
``lax.scan`` of its step. Here: second-order gradients, what layer norm and
the cell clip do, the init layout, bad options, stacks and modules.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.test_util import check_grads

import jaxrnn
from tests.helpers import CASES, P, fast_jit, random_carry, tree_close
from tests.helpers import make as make_params

D, H = 4, 6


def make(name, dtype=jnp.float32):
    """(params, step) of a row of the conformance table, every vector drawn at random."""
    return make_params(name, D, H, dtype=dtype), CASES[name].step


def hidden(carry):
    return carry.h if isinstance(carry, jaxrnn.LSTMState) else carry


# The equations -------------------------------------------------------------------------------


# Every option at least once: non-coupled peepholes, projection and clip; layer norm with all
# the others (coupled); the GRU's two reset placements. Reverse mode, which training uses
# (forward mode through a step is JAX's own, and each mode costs seconds here).
@pytest.mark.parametrize(
    "name", ["lstm_all", "lstm_proj_peephole_clip", "gru_layer_norm", "gru_layer_norm_reset_after"]
)
@pytest.mark.slow
def test_step_gradients_order_2(name, x64):
    params, step = make(name, dtype=jnp.float64)
    carry = random_carry(params, 2, ())
    x = jax.random.normal(jax.random.key(3), (D,), jnp.float64)
    # Finite differences of second order through a normalisation need a looser tolerance.
    check_grads(step, (params, carry, x), order=2, modes=["rev"], atol=1e-4, rtol=1e-4)


# The variants' own properties ----------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["lstm_layer_norm", "lstm_all", "gru_layer_norm", "gru_layer_norm_reset_after"]
)
def test_layer_norm_ignores_the_scale_of_the_weights(name, x64):
    params, step = make(name, dtype=jnp.float64)
    carry = random_carry(params, 2, (3,))
    xs = jax.random.normal(jax.random.key(3), (5, 3, D), jnp.float64)
    # Large weights, so that epsilon (1e-5) is negligible next to every variance.
    params = params.__class__(**{**vars(params), "w_x": 100 * params.w_x, "w_h": 100 * params.w_h})
    run = fast_jit(lambda params: jaxrnn.scan(step, params, xs, carry=carry)[1])
    want = run(params)
    for field, factor in (("w_x", 3.0), ("w_h", 0.5)):
        scaled = params.__class__(**{**vars(params), field: factor * getattr(params, field)})
        np.testing.assert_allclose(run(scaled), want, rtol=1e-5, atol=1e-5)
    # Without the normalisation the scale does matter.
    plain = params.__class__(
        **{**vars(params), "layer_norm": False, "ln_x": None, "ln_h": None}
        | ({"ln_c": None} if name in ("lstm_layer_norm", "lstm_all") else {})
    )
    scaled = params.__class__(**{**vars(plain), "w_x": 3.0 * plain.w_x})
    assert not np.allclose(run(scaled), want, atol=1e-3)


def test_cell_clip_bounds_the_cell_and_stops_its_gradient():
    params, step = make("lstm_clip")
    xs = 5.0 * jax.random.normal(jax.random.key(3), (20, 4, D))
    run = fast_jit(lambda params: jaxrnn.scan(step, params, xs))
    assert float(jnp.abs(run(params)[0].c).max()) <= 0.5
    unclipped = params.__class__(**{**vars(params), "cell_clip": None})
    assert float(jnp.abs(run(unclipped)[0].c).max()) > 0.5
    # A clip far above every value changes nothing, but for the rounding of the
    # multiply-adds next to it, which XLA may then fuse otherwise (1 ulp).
    loose = params.__class__(**{**vars(params), "cell_clip": 1e6})
    np.testing.assert_allclose(run(loose)[1], run(unclipped)[1], rtol=3e-7, atol=3e-7)
    # Where the new cell is clipped, nothing flows back through it.
    c0 = jnp.full((4, H), 3.0)
    x = jnp.zeros((4, D))

    def new_cell(c):
        return step(params, jaxrnn.LSTMState(jnp.zeros((4, H)), c), x)[0].c

    clipped = np.abs(np.asarray(new_cell(c0))) >= 0.5
    assert clipped.any()
    np.testing.assert_array_equal(np.asarray(jax.grad(lambda c: new_cell(c).sum())(c0))[clipped], 0)


def test_init_layout_and_sizes():
    key = jax.random.key(0)
    plain = jaxrnn.lstm_init(key, D, H)
    assert plain.w_r is plain.w_c is plain.ln_x is None
    assert (plain.hidden_size, plain.output_size, plain.gates) == (H, H, 4)
    p = jaxrnn.lstm_init(key, D, H, proj_size=P, peephole=True, layer_norm=True)
    assert (p.w_x.shape, p.w_h.shape, p.w_r.shape, p.w_c.shape) == (
        (D, 4 * H),
        (P, 4 * H),
        (H, P),
        (3 * H,),
    )
    assert (p.hidden_size, p.output_size, p.input_size) == (H, P, D)
    for block in np.split(np.asarray(p.w_h), 4, axis=1):  # orthonormal rows
        np.testing.assert_allclose(block @ block.T, np.eye(P), atol=1e-5)
    np.testing.assert_array_equal(p.w_c, 0.0)
    assert p.ln_x.scale.shape == p.ln_h.bias.shape == (4 * H,) and p.ln_c.scale.shape == (H,)
    np.testing.assert_array_equal(p.ln_x.scale, 1.0)
    np.testing.assert_array_equal(p.ln_c.bias, 0.0)
    # Coupled: three blocks f, g, o, the forget bias in the first; peepholes for f and o.
    q = jaxrnn.lstm_init(key, D, H, coupled=True, peephole=True, forget_bias=2.0)
    assert q.w_x.shape == (D, 3 * H) and q.w_c.shape == (2 * H,) and q.gates == 3
    np.testing.assert_array_equal(q.b.reshape(3, H), np.array([[2.0], [0.0], [0.0]]) * np.ones(H))
    carry = jaxrnn.initial_carry(p, (2, 5))
    assert carry.h.shape == (2, 5, P) and carry.c.shape == (2, 5, H)
    g = jaxrnn.gru_init(key, D, H, layer_norm=True)
    assert g.ln_x.scale.shape == g.ln_h.scale.shape == (3 * H,) and g.layer_norm
    # Variants are static: jit and grad see only arrays.
    assert len(jax.tree.leaves(p)) == 11
    grads = fast_jit(jax.grad(lambda p: jaxrnn.lstm_step(p, carry, jnp.ones((2, 5, D)))[1].sum()))(
        p
    )
    assert jax.tree.structure(grads) == jax.tree.structure(p) and grads.proj_size == P


def test_bad_options_are_refused_naming_the_argument():
    key = jax.random.key(0)
    cases = [
        (ValueError, r"proj_size: expected a non-negative int, got -1", {"proj_size": -1}),
        (ValueError, r"proj_size: expected a non-negative int, got True", {"proj_size": True}),
        (ValueError, r"proj_size: expected an int in \[0, hidden_size=6\)", {"proj_size": 6}),
        (
            ValueError,
            r"cell_clip: expected None or a finite number above 0, got 0",
            {"cell_clip": 0},
        ),
        (ValueError, r"cell_clip: .* got -1.0", {"cell_clip": -1.0}),
        (ValueError, r"cell_clip: .* got nan", {"cell_clip": float("nan")}),
        (ValueError, r"cell_clip: .* got True", {"cell_clip": True}),
        (TypeError, r"peephole: expected a bool, got 'no'", {"peephole": "no"}),
        (TypeError, r"layer_norm: expected a bool, got 1", {"layer_norm": 1}),
        (TypeError, r"coupled: expected a bool, got None", {"coupled": None}),
    ]
    for error, message, options in cases:
        with pytest.raises(error, match=message):
            jaxrnn.lstm_init(key, D, H, **options)
    with pytest.raises(TypeError, match=r"layer_norm: expected a bool, got 1"):
        jaxrnn.gru_init(key, D, H, layer_norm=1)
    # Params put together by hand: the arrays must match the options.
    p = jaxrnn.lstm_init(key, D, H, proj_size=P)
    carry = jaxrnn.initial_carry(p, (2,))
    x = jnp.ones((2, D))
    with pytest.raises(ValueError, match=r"params.w_r: expected None with proj_size=0"):
        jaxrnn.lstm_step(jaxrnn.LSTMParams(p.w_x, p.w_h, p.b, w_r=p.w_r), carry, x)
    with pytest.raises(ValueError, match=r"params.w_c: expected an array with peephole=True"):
        jaxrnn.lstm_step(
            jaxrnn.LSTMParams(p.w_x, p.w_h, p.b, p.w_r, proj_size=P, peephole=True), carry, x
        )
    with pytest.raises(ValueError, match=r"params.w_h: expected shape \(2, 24\)"):
        jaxrnn.lstm_step(jaxrnn.LSTMParams(p.w_x, p.w_h, p.b, w_r=p.w_r, proj_size=2), carry, x)
    with pytest.raises(ValueError, match=r"carry.h: expected shape \(2, 3\)"):
        jaxrnn.lstm_step(p, jaxrnn.LSTMState(jnp.zeros((2, H)), jnp.zeros((2, H))), x)
    g = jaxrnn.gru_init(key, D, H, layer_norm=True)
    with pytest.raises(ValueError, match=r"params.ln_h.scale: expected shape \(18,\)"):
        bad = g.__class__(**{**vars(g), "ln_h": g.ln_h._replace(scale=g.ln_h.scale[:H])})
        jaxrnn.gru_step(bad, jnp.zeros((2, H)), x)


# Stacks and modules --------------------------------------------------------------------------


@pytest.mark.slow  # the fast lane's time: see README
def test_projected_stack_equals_its_layers_one_by_one():
    step = jaxrnn.lstm_step
    layers = jaxrnn.stack_init(
        jax.random.key(0), jaxrnn.lstm_init, D, H, num_layers=2, bidirectional=True,
        proj_size=P, peephole=True,
    )  # fmt: skip
    assert [p.w_x.shape[0] for layer in layers for p in layer] == [D, D, 2 * P, 2 * P]
    one_way = jaxrnn.stack_init(
        jax.random.key(3), jaxrnn.lstm_init, D, H, num_layers=2, proj_size=P
    )
    xs = jax.random.normal(jax.random.key(1), (6, 3, D))
    lengths = jnp.array([6, 2, 4])

    @fast_jit
    def run(layers, one_way, xs):
        whole = jaxrnn.stack_scan(step, layers, xs, lengths=lengths)
        finals, inputs = [], xs
        for k in range(2):
            fwd = jaxrnn.scan(step, layers[k][0], inputs, lengths=lengths)
            bwd = jaxrnn.scan(step, layers[k][1], inputs, lengths=lengths, reverse=True)
            finals.append((fwd[0], bwd[0]))
            inputs = jnp.concatenate([fwd[1], bwd[1]], axis=-1)
        # Recurrent dropout masks H_{t-1}, of size P.
        dropped = jaxrnn.stack_scan(step, layers, xs, recurrent_dropout=0.3, key=jax.random.key(2))
        # Streaming one step at a time equals the whole scan.
        carry = jaxrnn.initial_carry(one_way, (3,))
        streamed = jax.lax.scan(functools.partial(jaxrnn.stack_step, step, one_way), carry, xs)
        return (
            whole,
            (tuple(finals), inputs),
            dropped[1],
            streamed,
            jaxrnn.stack_scan(step, one_way, xs),
        )

    whole, by_layer, dropped, streamed, scanned = run(layers, one_way, xs)
    tree_close(whole, by_layer, 1e-6, 1e-6)
    assert whole[1].shape == dropped.shape == (6, 3, 2 * P) and whole[0][1][1].c.shape == (3, H)
    tree_close(streamed, scanned, 1e-6, 1e-6)


MODULE_OPTIONS = {
    "LSTM": {"proj_size": P, "peephole": True, "layer_norm": True, "cell_clip": 2.0},
    "GRU": {"layer_norm": True, "reset_after": True},
}


@pytest.mark.slow  # every module by name in tests/conformance; here every option at once
@pytest.mark.parametrize("name", MODULE_OPTIONS)
def test_modules_take_the_options(name):
    options = MODULE_OPTIONS[name]
    step = jaxrnn.get_cell(name.lower()).step
    x = jax.random.normal(jax.random.key(1), (3, 5, D))  # (B, T, d)
    lengths = jnp.array([5, 2, 0])
    out = P if "proj_size" in options else H
    nnx_layer, linen_layer = getattr(jaxrnn.nnx, name), getattr(jaxrnn.linen, name)
    model = nnx_layer(D, H, bidirectional=True, rngs=nnx.Rngs(0), **options)
    linen = linen_layer(H, num_layers=2, deterministic=True, **options)

    @fast_jit
    def run(layers, key):
        want = jaxrnn.stack_scan(step, layers, jnp.moveaxis(x, 1, 0), lengths=lengths)[1]
        got = nnx_layer.from_layers(layers)(x, lengths=lengths)
        variables = linen.init(key, x)
        linen_layers = linen.to_layers(variables)
        want_linen = jaxrnn.stack_scan(step, linen_layers, jnp.moveaxis(x, 1, 0), lengths=lengths)
        got_linen = linen.apply(variables, x, lengths=lengths)
        return (
            linen_layers,
            (got, jnp.moveaxis(want, 0, 1)),
            (got_linen, jnp.moveaxis(want_linen[1], 0, 1)),
        )

    layers = model.to_layers()
    linen_layers, nnx_pair, linen_pair = run(layers, jax.random.key(0))
    for built in (layers, linen_layers):
        assert all(getattr(p, k) == v for layer in built for p in layer for k, v in options.items())
    assert nnx_pair[0].shape == (3, 5, 2 * out) and linen_pair[0].shape == (3, 5, out)
    tree_close(*nnx_pair, 1e-6, 1e-6)
    tree_close(*linen_pair, 1e-6, 1e-6)
    cell = getattr(jaxrnn.linen, f"{name}Cell")(H, **options)
    carry = cell.initial_carry((3,))
    assert hidden(carry).shape == (3, out)
    variables = cell.init(jax.random.key(0), carry, x[:, 0])
    assert cell.apply(variables, carry, x[:, 0])[1].shape == (3, out)
    nnx_cell = getattr(jaxrnn.nnx, f"{name}Cell")(D, H, rngs=nnx.Rngs(0), **options)
    assert hidden(nnx_cell(nnx_cell.initial_carry((3,)), x[:, 0])[0]).shape == (3, out)
