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


# Errors a careless user meets (the hostile pass of the "today's JAX" round) -------------


def test_a_step_given_another_cells_params_names_both():
    gru = jaxrnn.gru_init(jax.random.key(0), 3, 4)
    lstm = jaxrnn.lstm_init(jax.random.key(0), 3, 4)
    h, x = jnp.zeros((2, 4)), jnp.ones((2, 3))
    for step, params, want in (
        (jaxrnn.mgu_step, gru, "mgu_step expects MGUParams, got GRUParams"),
        (jaxrnn.gru_step, lstm, "gru_step expects GRUParams, got LSTMParams"),
        (jaxrnn.gru_step, {"w_x": gru.w_x}, "gru_step expects GRUParams, got dict"),
        (jaxrnn.mingru_step, gru, "mingru_step expects MinGRUParams, got GRUParams"),
    ):
        with pytest.raises(TypeError, match=f"params: {want}"):
            step(params, h, x)
        with pytest.raises(TypeError, match=f"params: {want}"):
            jaxrnn.scan(step, params, x[None])


def test_a_user_step_must_return_carry_and_y():
    xs, carry = jnp.ones((5, 2, 3)), jnp.zeros((2, 3))
    for step, got in (
        (lambda p, c, x: c, r"one array of shape \(2, 3\)"),
        (lambda p, c, x: (c, x, x), "a tuple of 3"),
    ):
        with pytest.raises(
            TypeError, match=rf"step: expected it to return \(carry, y\), got {got}"
        ):
            jaxrnn.scan(step, None, xs, carry=carry)
    with pytest.raises(TypeError, match="step: expected it to return a carry of the structure"):
        jaxrnn.scan(lambda p, c, x: ((c, c), x), None, xs, carry=carry)


def test_forward_mode_through_a_rule_says_use_autodiff():
    params = jaxrnn.gru_init(jax.random.key(0), 3, 4)
    xs = jnp.ones((5, 2, 3))
    run = lambda gradient: lambda xs: jaxrnn.scan("gru", params, xs, gradient=gradient)[1]
    with pytest.raises(TypeError, match=r"gradient: the 'gru' cell's .*gradient=\"autodiff\""):
        jax.jvp(run("auto"), (xs,), (xs,))
    jax.jvp(run("autodiff"), (xs,), (xs,))  # as the message says


def test_init_names_a_key_that_is_not_one():
    for init in (jaxrnn.gru_init, jaxrnn.lstm_init, jaxrnn.mingru_init, jaxrnn.rnn_init):
        with pytest.raises(TypeError, match=r"key: expected a PRNG key .* got 0"):
            init(0, 3, 4)
    jaxrnn.gru_init(jax.random.PRNGKey(0), 3, 4)  # a raw uint32 key still works


def test_from_flax_refuses_params_of_another_size():
    from flax import linen as nn

    small = nn.LSTMCell(4)
    carry = small.initialize_carry(jax.random.key(0), (2, 3))
    params = small.init(jax.random.key(0), carry, jnp.ones((2, 3)))
    with pytest.raises(ValueError, match=r"cell.features: the LSTMCell has features=7, but .* 4 "):
        jaxrnn.interop.from_flax(nn.LSTMCell(7), params)


def test_a_spatial_cells_module_needs_the_batch_axis():
    from flax import nnx

    model = jaxrnn.nnx.Recurrent("conv_lstm", 3, 4, kernel_size=(3, 3), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"inputs: .*at least one batch axis .*2 spatial axes"):
        model(jnp.ones((5, 8, 6, 3)))  # (B, T, L, C): would read as (T, H, W, C)
    assert model(jnp.ones((1, 5, 8, 6, 3))).shape == (1, 5, 8, 6, 4)
    with pytest.raises(TypeError, match="Recurrent: unexpected option 'bogus'; it has no options"):
        jaxrnn.nnx.Recurrent("mingru", 3, 4, bogus=1, rngs=nnx.Rngs(0))


def test_no_advice_to_cast_to_float64_while_x64_is_off():
    import numpy as np

    params = jaxrnn.gru_init(jax.random.key(0), 3, 4)
    wide = jax.tree.map(lambda a: np.asarray(a, np.float64), params)  # NumPy keeps float64
    with pytest.raises(TypeError, match="x: expected dtype float64") as error:
        jaxrnn.gru_step(wide, jnp.zeros((2, 4)), jnp.ones((2, 3)))
    assert "jax_enable_x64" in str(error.value) and "astype(jnp.float64)" not in str(error.value)


def test_a_precision_policy_that_is_not_one_is_refused():
    params = jaxrnn.gru_init(jax.random.key(0), 3, 4)
    xs = jnp.ones((5, 2, 3))
    for keyword, bad in (("dtype", jnp.int8), ("dtype", "yes"), ("carry_dtype", jnp.int32)):
        with pytest.raises(TypeError, match=rf"{keyword}: expected a .*floating-point dtype"):
            jaxrnn.scan("gru", params, xs, **{keyword: bad})
        with pytest.raises(TypeError, match=rf"{keyword}: expected a .*floating-point dtype"):
            jaxrnn.stack_scan("gru", ((params,),), xs, **{keyword: bad})
    with pytest.raises(TypeError, match=r"dtype: expected a floating-point dtype .*got None"):
        jaxrnn.with_precision(jaxrnn.gru_step, None)
    # A narrower carry than the params is refused by the step, naming it.
    with pytest.raises(TypeError, match=r"carry: expected dtype float32 .* or a wider"):
        jaxrnn.scan("gru", params, xs, carry_dtype=jnp.bfloat16)
