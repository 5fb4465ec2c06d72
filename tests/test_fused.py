"""The fused gradient beyond first order, under vmap, and which steps get it.

``jaxrnn.scan`` with a built-in step runs a hand-written backward pass
(``jaxrnn/rules/fused.py``); ``tests/conformance`` holds its values and first
gradients to ``lax.scan`` of the step for every cell and option. Here: second
order, ``vmap`` over params, and the wrappings of a step that keep the rule.
"""

import functools

import jax
import jax.numpy as jnp
import pytest

import jaxrnn
from tests.helpers import CASES, make, random_carry, reference_scan, tree_close

D, H, T = 4, 6, 9


def arguments(name):
    params, step = make(name, D, H), CASES[name].step
    xs = jax.random.normal(jax.random.key(1), (T, 3, D))
    carry = random_carry(params, 2, (3,))
    kwargs = {
        "lengths": jnp.array([T, 0, 4]),
        "resets": jax.random.bernoulli(jax.random.key(3), 0.25, (T, 3)),
        "reverse": True,
    }
    return params, step, xs, carry, kwargs


@pytest.mark.parametrize("name", ["lstm", "gru_reset_after"])
def test_second_order_reverse(name):
    params, step, xs, carry, kwargs = arguments(name)

    def grad_norm(run):
        g = jax.grad(lambda p: jnp.sum(run(p)[1] ** 2))
        return jax.grad(lambda p: sum(jnp.sum(v**2) for v in jax.tree.leaves(g(p))))

    fused = grad_norm(lambda p: jaxrnn.scan(step, p, xs, carry=carry, gradient="rule", **kwargs))
    reference = grad_norm(lambda p: reference_scan(step, p, xs, carry=carry, **kwargs))
    tree_close(jax.jit(fused)(params), jax.jit(reference)(params), 1e-4, 1e-5)


def test_vmap_over_params_and_sequences():
    params, step, xs, carry, kwargs = arguments("lstm")
    stacked = jax.tree.map(lambda a: jnp.stack([a, 0.5 * a]), params)

    def loss(run):
        return jax.vmap(jax.grad(lambda p: jnp.sum(run(p)[1] ** 2)))

    fused = loss(lambda p: jaxrnn.scan(step, p, xs, carry=carry, gradient="rule", **kwargs))
    reference = loss(lambda p: reference_scan(step, p, xs, carry=carry, **kwargs))
    tree_close(jax.jit(fused)(stacked), jax.jit(reference)(stacked), 1e-4, 1e-5)


def _runs_the_rule(step, params):
    """Whether ``jaxrnn.scan`` of ``step`` runs a scan rule (a custom_vjp) for ``params``."""
    xs = jnp.ones((3, 2, D))
    jaxpr = str(jax.make_jaxpr(lambda p: jaxrnn.scan(step, p, xs))(params))
    return "custom_vjp_call" in jaxpr


def test_the_rule_runs_for_the_step_its_cell_and_a_keyword_partial_only():
    params = jaxrnn.lstm_init(jax.random.key(0), D, H)
    mask = jnp.ones((2, H))
    keeps = [
        jaxrnn.lstm_step,
        "lstm",
        jaxrnn.get_cell("lstm"),
        functools.partial(jaxrnn.lstm_step, recurrent_mask=mask),
    ]
    for step in keeps:
        assert _runs_the_rule(step, params), step
        jaxrnn.scan(step, params, jnp.ones((3, 2, D)), gradient="rule")  # no error
    # Wrapped: the same values, by lax.scan of the wrapper; gradient="rule" says why.
    wrapped = {
        "lambda": lambda p, c, x: jaxrnn.lstm_step(p, c, x),
        "jit": jax.jit(jaxrnn.lstm_step),
    }
    xs = jax.random.normal(jax.random.key(1), (3, 2, D))
    want = jaxrnn.scan(jaxrnn.lstm_step, params, xs)
    for what, step in wrapped.items():
        assert not _runs_the_rule(step, params), what
        tree_close(jaxrnn.scan(step, params, xs), want, 1e-6, 1e-6)
        with pytest.raises(ValueError, match="gradient: 'rule' needs the step's cell's scan"):
            jaxrnn.scan(step, params, xs, gradient="rule")
    with pytest.raises(TypeError, match=r"params: gru_step expects GRUParams, got LSTMParams"):
        jaxrnn.scan(jaxrnn.gru_step, params, xs, gradient="rule")

    def users_own(params, h, x):  # a step of no registered cell
        h = jnp.tanh(x @ params["w"] + h)
        return h, h

    with pytest.raises(ValueError, match="no registered cell has params of type dict"):
        jaxrnn.scan(
            users_own, {"w": params.w_x[:, :H]}, xs, carry=jnp.zeros((2, H)), gradient="rule"
        )
    with pytest.raises(ValueError, match="the 'conv_lstm' cell registers no scan rule"):
        p = jaxrnn.conv_lstm_init(jax.random.key(0), D, H, (3,))
        jaxrnn.scan(jaxrnn.conv_lstm_step, p, jnp.ones((3, 2, 5, D)), gradient="rule")
