"""What a careless or hostile user passes to the core: each case was once silently wrong.

Every test here names the item it closes; each compares against an independent
result (the int32 run, the clean run, a run of the episode alone) or expects
an error naming the argument, the expected value and the actual one.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn
from tests.helpers import CASES, CLASSIC, make, random_carry

D, H = 3, 4
GRADIENTS = ("auto", "autodiff")


def tree_close(a, b, rtol=1e-5, atol=1e-6):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


# Lengths in a narrow integer type --------------------------------------------------------


@pytest.mark.parametrize(
    ("dtype", "steps", "lengths"),
    [
        (jnp.uint8, 300, [250, 7, 0]),
        (jnp.int8, 200, [100, 127, 3]),
        (jnp.int16, 40000, [30000, 1, 32767]),
    ],
)
@pytest.mark.parametrize("reverse", [False, True])
def test_lengths_of_any_integer_dtype_equal_int32(dtype, steps, lengths, reverse):
    params = jaxrnn.gru_init(jax.random.key(0), 1, 2)
    xs = jax.random.normal(jax.random.key(1), (steps, 3, 1))
    run = jax.jit(functools.partial(jaxrnn.scan, jaxrnn.gru_step, reverse=reverse))
    want = run(params, xs, lengths=jnp.array(lengths, jnp.int32))
    got = run(params, xs, lengths=jnp.array(lengths, dtype))
    tree_close(got, want, 0, 0)
    ys = np.asarray(got[1])
    for b, n in enumerate(lengths):
        assert not ys[n:, b].any(), "outputs past the length must be zero"


def test_lengths_beyond_the_dtype_range_of_time_and_negative():
    params = jaxrnn.rnn_init(jax.random.key(0), 1, 2)
    xs = jnp.ones((5, 3, 1))
    got = jaxrnn.scan(jaxrnn.rnn_step, params, xs, lengths=jnp.array([-3, 9, 5], jnp.int8))
    want = jaxrnn.scan(jaxrnn.rnn_step, params, xs, lengths=jnp.array([0, 5, 5]))
    tree_close(got, want, 0, 0)


# NaN or Inf in the padding ---------------------------------------------------------------


def _padded_loss(step, params, xs, lengths, gradient):
    def loss(params, xs):
        carry, ys = jaxrnn.scan(step, params, xs, lengths=lengths, gradient=gradient)
        return jnp.sum(ys**2) + sum(jnp.sum(c) for c in jax.tree.leaves(carry))

    return jax.value_and_grad(loss, (0, 1))(params, xs)


@pytest.mark.slow  # the fast lane's time: see README
@pytest.mark.parametrize("recurrent_dropout", [0.0, 0.3])
def test_nan_in_the_padding_through_a_bidirectional_stack(recurrent_dropout):
    layers = jaxrnn.stack_init(
        jax.random.key(0), jaxrnn.lstm_init, D, H, num_layers=2, bidirectional=True
    )
    clean = jax.random.normal(jax.random.key(1), (7, 3, D))
    dirty = clean.at[4:, 0].set(jnp.nan).at[2:, 2].set(-jnp.inf)
    lengths = jnp.array([4, 7, 2])

    def loss(layers, xs):
        _, ys = jaxrnn.stack_scan(
            jaxrnn.lstm_step,
            layers,
            xs,
            lengths=lengths,
            recurrent_dropout=recurrent_dropout,
            key=jax.random.key(5),
        )
        return jnp.sum(ys**2)

    grads = jax.grad(loss, (0, 1))
    got, want = grads(layers, dirty), grads(layers, clean)
    for leaf in jax.tree.leaves(got):
        assert np.isfinite(np.asarray(leaf)).all()
    tree_close(got, want, 0, 0)


# Resets on padded steps ------------------------------------------------------------------


@pytest.mark.parametrize("gradient", GRADIENTS)
@pytest.mark.parametrize("reverse", [False, True])
def test_a_reset_on_a_padded_step_does_nothing(reverse, gradient):
    params, step = make("lstm", D, H, seed=0), CASES["lstm"].step
    xs = jax.random.normal(jax.random.key(1), (6, 2, D))
    carry = random_carry(params, 2, (2,))
    lengths = jnp.array([6, 3])
    resets = jnp.zeros((6, 2), bool).at[4, 1].set(True).at[5, 1].set(True)
    run = functools.partial(
        jaxrnn.scan, step, params, xs, carry=carry, lengths=lengths, reverse=reverse
    )
    # Two programs: XLA may round their fused arithmetic differently, by an ulp.
    tree_close(run(resets=resets, gradient=gradient), run(gradient=gradient), 1e-6, 1e-7)


# Params that do not fit together ---------------------------------------------------------


def _replace(params, **fields):
    return type(params)(**{**vars(params), **fields})


@pytest.mark.parametrize(
    ("name", "field", "shape", "want"),
    [
        ("rnn_tanh", "w_h", (H, 4 * H), r"params.w_h: expected shape \(4, 4\)"),
        ("rnn_tanh", "b", (), r"params.b: expected a 1-D array, got shape \(\)"),
        ("lstm", "b", (H,), r"params.b: expected shape \(16,\) .* got \(4,\)"),
        ("lstm", "w_h", (H, 3 * H), r"params.w_h: expected shape \(4, 16\) .* got \(4, 12\)"),
        ("gru", "b_h", (2 * H,), r"params.b_h: expected shape \(12,\) .* got \(8,\)"),
        ("gru", "w_h", (H, 3 * H + 3), r"params.w_h: expected shape \(4, 12\) .* got \(4, 15\)"),
    ],
)
@pytest.mark.parametrize("gradient", GRADIENTS)
def test_params_of_inconsistent_shapes_are_named(name, field, shape, want, gradient):
    params, step = make(name, D, H, seed=0), CASES[name].step
    params = _replace(params, **{field: jnp.ones(shape)})
    xs = jnp.ones((4, 2, D))
    with pytest.raises(ValueError, match=want):
        jaxrnn.scan(step, params, xs, carry=jnp.zeros((2, H)), gradient=gradient)
    with pytest.raises(ValueError, match=want):
        jax.jit(lambda p: step(p, jaxrnn.initial_carry(params, (2,)), xs[0]))(params)


def test_params_of_mixed_or_integer_dtypes_are_named():
    params = jaxrnn.lstm_init(jax.random.key(0), D, H)
    carry, x = jaxrnn.initial_carry(params), jnp.ones(D)
    mixed = _replace(params, w_x=params.w_x.astype(jnp.bfloat16))
    with pytest.raises(TypeError, match=r"params.w_x: expected dtype float32 .* got bfloat16"):
        jaxrnn.lstm_step(mixed, carry, x)
    integer = jax.tree.map(lambda a: a.astype(jnp.int32), params)
    with pytest.raises(TypeError, match=r"params.w_x: expected a floating-point array.*float32"):
        jaxrnn.lstm_step(integer, carry, x)


def test_a_plain_array_as_an_lstm_carry_says_what_a_carry_is():
    params = jaxrnn.lstm_init(jax.random.key(0), D, H)
    for call in (
        lambda c: jaxrnn.lstm_step(params, c, jnp.ones((2, D))),
        jax.jit(lambda c: jaxrnn.lstm_step(params, c, jnp.ones((2, D)))),
    ):
        with pytest.raises(TypeError, match=r"LSTMState\(h, c\), got an array of shape \(2, 4\)"):
            call(jnp.zeros((2, H)))


# Accepted nonsense -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "error", "want"),
    [
        (
            lambda p, xs: jaxrnn.scan(jaxrnn.gru_step, p, xs, reverse="no"),
            TypeError,
            "reverse: expected a bool, got 'no'",
        ),
        (
            lambda p, xs: jaxrnn.scan(jaxrnn.gru_step, p, xs, remat="yes"),
            TypeError,
            "remat: expected a bool, got 'yes'",
        ),
        (
            lambda p, xs: jaxrnn.scan(jaxrnn.gru_step, p, xs, gradient="fused"),
            ValueError,
            "gradient: expected one of auto, rule, autodiff, got 'fused'",
        ),
        (
            lambda p, xs: jaxrnn.scan(jaxrnn.gru_step, p, xs, unroll=0),
            ValueError,
            "unroll: expected a positive int or a bool, got 0",
        ),
        (
            lambda p, xs: jaxrnn.stack_init(
                jax.random.key(0), jaxrnn.gru_init, D, H, bidirectional="no"
            ),
            TypeError,
            "bidirectional: expected a bool, got 'no'",
        ),
        (
            lambda p, xs: jaxrnn.stack_init(
                jax.random.key(0), jaxrnn.gru_init, D, H, num_layers=True
            ),
            ValueError,
            "num_layers: expected a positive int, got True",
        ),
        (
            lambda p, xs: jaxrnn.lstm_init(jax.random.key(0), D, H, dtype=jnp.int32),
            TypeError,
            "dtype: expected a real floating-point dtype .* got int32",
        ),
        (
            lambda p, xs: jaxrnn.gru_init(jax.random.key(0), D, H, dtype=jnp.complex64),
            TypeError,
            "dtype: expected a real floating-point dtype .* got complex64",
        ),
        (
            lambda p, xs: jaxrnn.lstm_init(jax.random.key(0), D, H, forget_bias=float("nan")),
            ValueError,
            "forget_bias: expected a finite number, got nan",
        ),
        (
            lambda p, xs: jaxrnn.rnn_init(jax.random.key(0), D, True),
            ValueError,
            "hidden_size: expected a positive int, got True",
        ),
        (
            lambda p, xs: jaxrnn.initial_carry(p, (2.7,)),
            TypeError,
            r"batch_shape: expected a tuple of ints, got \(2.7,\)",
        ),
        (
            lambda p, xs: jaxrnn.stack_scan(
                jaxrnn.gru_step, ((p,),), xs, dropout=True, key=jax.random.key(0)
            ),
            ValueError,
            r"dropout: expected a rate in \[0, 1\), got True",
        ),
    ],
)
def test_nonsense_is_refused_naming_the_argument(call, error, want):
    params = jaxrnn.gru_init(jax.random.key(0), D, H)
    with pytest.raises(error, match=want):
        call(params, jnp.ones((3, 2, D)))


def test_a_scalar_bias_is_not_broadcast_to_every_gate():
    params = jaxrnn.lstm_init(jax.random.key(0), D, H)
    scalar = _replace(params, b=jnp.float32(1.0))
    with pytest.raises(ValueError, match=r"params.b: expected a 1-D array, got shape \(\)"):
        jaxrnn.scan(jaxrnn.lstm_step, scalar, jnp.ones((3, D)))


def test_a_user_cell_with_tuple_params_gets_its_own_error_not_the_stacks():
    with pytest.raises(TypeError, match="no initial carry is known for a plain tuple"):
        jaxrnn.initial_carry((jnp.ones((D, H)), jnp.ones(H)), (2,))


@pytest.mark.parametrize("name", CLASSIC)
def test_recurrent_dropout_keeps_the_fused_gradient_and_its_values(name):
    """The mask reaches the fused path as an input; gradients equal autodiff's, mask included."""
    params, step = make(name, D, H, seed=0), CASES[name].step
    xs = jax.random.normal(jax.random.key(1), (5, 2, D))
    mask = jax.random.uniform(jax.random.key(2), (2, H))
    masked = functools.partial(step, recurrent_mask=mask)
    jaxrnn.scan(masked, params, xs, gradient="rule")  # the mask keeps the rule

    def loss(gradient):
        def f(params, mask, xs):
            run = functools.partial(step, recurrent_mask=mask)
            carry, ys = jaxrnn.scan(run, params, xs, lengths=jnp.array([5, 3]), gradient=gradient)
            return jnp.sum(ys * jnp.cos(ys)) + sum(jnp.sum(c**2) for c in jax.tree.leaves(carry))

        return jax.value_and_grad(f, (0, 1, 2))(params, mask, xs)

    tree_close(loss("auto"), loss("autodiff"), 2e-5, 2e-6)
