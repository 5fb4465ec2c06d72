"""Bad input gets a clear error at trace time, naming the argument, expected and actual."""

import functools

import jax
import jax.numpy as jnp
import pytest

import jaxrnn
from tests.helpers import CASES, CLASSIC

D, H = 4, 6


def params_of(name, **kw):
    case = CASES[name]
    cell = jaxrnn.get_cell(case.cell)
    return cell.init(jax.random.key(0), D, H, **case.options, **kw), cell.step


def both(fn, *args, **kwargs):
    """Calls ``fn`` eagerly and under jit; each must raise the same error."""
    yield lambda: fn(*args, **kwargs)
    yield lambda: jax.jit(functools.partial(fn, **kwargs))(*args)


@pytest.mark.parametrize("name", CLASSIC)
def test_step_wrong_feature_size(name):
    params, step = params_of(name)
    carry = jaxrnn.initial_carry(params, (2,))
    for call in both(step, params, carry, jnp.ones((2, D + 1))):
        with pytest.raises(ValueError, match=r"x: expected feature size 4 .* got shape \(2, 5\)"):
            call()


@pytest.mark.parametrize("name", CLASSIC)
def test_step_carry_of_wrong_shape(name):
    params, step = params_of(name)
    carry = jaxrnn.initial_carry(params, (3,))
    for call in both(step, params, carry, jnp.ones((2, D))):
        with pytest.raises(ValueError, match=r"carry(\.h)?: expected shape \(2, 6\).*got \(3, 6\)"):
            call()


@pytest.mark.parametrize("name", CLASSIC)
def test_step_integer_input(name):
    params, step = params_of(name)
    with pytest.raises(TypeError, match="x: expected a floating-point array, got dtype int32"):
        step(params, jaxrnn.initial_carry(params), jnp.ones(D, jnp.int32))


def test_step_dtype_mismatch():
    params, step = params_of("gru", dtype=jnp.bfloat16)
    with pytest.raises(
        TypeError, match=r"x: expected dtype bfloat16 \(the params' dtype\), got float32"
    ):
        step(params, jaxrnn.initial_carry(params), jnp.ones(D))


def test_lstm_carry_must_be_named():
    params, step = params_of("lstm")
    carry = jaxrnn.initial_carry(params)
    with pytest.raises(TypeError, match=r"carry: expected a jaxrnn.LSTMState\(h, c\), got tuple"):
        step(params, (carry.h, carry.c), jnp.ones(D))


@pytest.mark.parametrize("name", CLASSIC)
def test_scan_bad_inputs(name):
    params, step = params_of(name)
    xs = jnp.ones((5, 2, 3, D))
    cases = [
        (
            dict(xs=jnp.ones((5, 2, D + 2))),
            ValueError,
            r"xs: expected feature size 4 .*\(5, 2, 6\)",
        ),
        (
            dict(xs=jnp.ones((D,))),
            ValueError,
            r"xs: expected a time-major array .* got shape \(4,\)",
        ),
        (dict(xs=jnp.ones((5, 2, D), jnp.int32)), TypeError, "xs: expected a floating-point array"),
        (
            dict(lengths=jnp.ones((3, 2), jnp.int32)),
            ValueError,
            r"lengths: expected shape \(2, 3\) .* got \(3, 2\)",
        ),
        (
            dict(lengths=jnp.ones((2, 3))),
            TypeError,
            "lengths: expected an integer array, got dtype float32",
        ),
        (
            dict(resets=jnp.zeros((5, 2), bool)),
            ValueError,
            r"resets: expected shape \(5, 2, 3\) .* got \(5, 2\)",
        ),
        (
            dict(resets=jnp.zeros((5, 2, 3))),
            TypeError,
            "resets: expected a bool array, got dtype float32",
        ),
        (
            dict(carry=jaxrnn.initial_carry(params, (3, 2))),
            ValueError,
            r"carry(\.h)?.*\(2, 3\).*got.*\(3, 2",
        ),
    ]
    for change, error, message in cases:
        kwargs = {"xs": xs} | change
        args = (params, kwargs.pop("xs"))
        for call in both(functools.partial(jaxrnn.scan, step), *args, **kwargs):
            with pytest.raises(error, match=message):
                call()


def test_scan_carry_without_batch_axes_with_lengths():
    params, step = params_of("gru")
    with pytest.raises(
        ValueError,
        match=r"carry: with lengths, every carry leaf must start with the batch axes \(2,\)",
    ):
        jaxrnn.scan(
            step, params, jnp.ones((3, 2, D)), carry=jnp.zeros(H), lengths=jnp.array([1, 2])
        )


def test_init_bad_arguments():
    with pytest.raises(ValueError, match="hidden_size: expected a positive int, got 0"):
        jaxrnn.lstm_init(jax.random.key(0), 3, 0)
    with pytest.raises(
        ValueError, match=r"activation: expected one of \['relu', 'tanh'\], got 'sigmoid'"
    ):
        jaxrnn.rnn_init(jax.random.key(0), 3, 4, activation="sigmoid")
    with pytest.raises(TypeError, match="reset_after: expected a bool, got 'yes'"):
        jaxrnn.gru_init(jax.random.key(0), 3, 4, reset_after="yes")
    with pytest.raises(ValueError, match=r"batch_shape: expected non-negative sizes, got \(-1,\)"):
        jaxrnn.initial_carry(jaxrnn.gru_init(jax.random.key(0), 3, 4), (-1,))
