"""The fused gradient of the built-in cells against ``lax.scan`` of the step itself.

``jaxrnn.scan`` with a built-in step runs a hand-written backward pass
(``jaxrnn/_fused.py``). Here every cell, under every option, is held to an
independent reference: ``jax.lax.scan(functools.partial(step, params), ...)``,
with the documented masking loop written out below, differentiated by JAX.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import jaxrnn
from jaxrnn._cell import scan_rule
from tests.cells import CELLS, make, random_carry

D, H, T = 4, 6, 9


def reference_scan(step, params, xs, *, carry, lengths=None, resets=None, reverse=False):
    """The loop in ``jaxrnn.scan``'s docstring, as ``lax.scan`` of the step."""
    batch = xs.shape[1:-1]
    carry0 = carry
    keep = None
    if lengths is not None:
        keep = jnp.arange(xs.shape[0]).reshape((-1,) + (1,) * len(batch)) < lengths[None]

    def expand(mask, leaf):
        return mask.reshape(mask.shape + (1,) * (leaf.ndim - mask.ndim))

    def body(carry, inputs):
        x, k, r = inputs
        if r is not None:
            if k is not None:
                r = r & k  # a padded step does nothing, a reset included
            carry = jax.tree.map(lambda a, b: jnp.where(expand(r, a), a, b), carry0, carry)
        new, y = functools.partial(step, params)(carry, x)
        if k is not None:
            new = jax.tree.map(lambda a, b: jnp.where(expand(k, a), a, b), new, carry)
            y = jnp.where(expand(k, y), y, 0)
        return new, y

    return jax.lax.scan(body, carry, (xs, keep, resets), reverse=reverse)


OPTIONS = {
    "none": {},
    "reverse": {"reverse": True},
    "lengths": {"lengths": True},
    "lengths_reverse": {"lengths": True, "reverse": True},
    "resets": {"resets": True},
    "all": {"lengths": True, "resets": True, "reverse": True},
    "remat": {"remat": True, "lengths": True},
    "remat_all": {"remat": True, "lengths": True, "resets": True, "reverse": True},
    "unroll": {"unroll": 3, "resets": True},
}
BATCHES = {"B3": (3,), "none": (), "2x3": (2, 3)}
# Each option alone for the LSTM; for every cell, no option and all of them together;
# the odd batch shapes for two cells (each case compiles twice: the full product is slow).
CASES = [("lstm", option, "B3") for option in OPTIONS]
CASES += [
    (name, option, "B3")
    for name in CELLS
    if name != "lstm"
    for option in ("none", "all", "remat_all")
]
CASES += [(name, "all", batch) for name in ("lstm", "gru_reset_after") for batch in ("none", "2x3")]


def arguments(name, option, batch, dtype=jnp.float32, steps=T):
    params, step, _ = make(name, jax.random.key(0), D, H, dtype=dtype)
    xs = jax.random.normal(jax.random.key(1), (steps, *batch, D), dtype)
    carry = random_carry(params, jax.random.key(2), batch)
    options = OPTIONS[option]
    kwargs = {"reverse": options.get("reverse", False)}
    size = int(np.prod(batch))
    if options.get("lengths"):
        lengths = np.array([steps, 0, 4, steps + 3, 1, 7])[:size] if size > 1 else np.array([5])
        kwargs["lengths"] = jnp.asarray(lengths.reshape(batch))
    if options.get("resets"):
        resets = jax.random.bernoulli(jax.random.key(3), 0.25, (steps, *batch))
        kwargs["resets"] = resets
    extra = {k: options[k] for k in ("remat", "unroll") if k in options}
    return params, step, xs, carry, kwargs, extra


def loss_weights(ys, carry, key=4):
    """A loss that weighs every output and carry element differently."""
    leaves = [ys, *jax.tree.leaves(carry)]
    keys = jax.random.split(jax.random.key(key), len(leaves))
    weights = [jax.random.normal(k, a.shape, a.dtype) for k, a in zip(keys, leaves, strict=True)]
    return sum(jnp.sum(w * a) for w, a in zip(weights, leaves, strict=True))


def tree_close(a, b, rtol, atol):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        assert x.dtype == y.dtype
        np.testing.assert_allclose(
            np.asarray(x, np.float32), np.asarray(y, np.float32), rtol=rtol, atol=atol
        )


@pytest.mark.parametrize(("name", "option", "batch"), CASES)
def test_values_and_gradients_equal_lax_scan_of_the_step(name, option, batch):
    params, step, xs, carry, kwargs, extra = arguments(name, option, BATCHES[batch])
    assert scan_rule(step, params) is not None

    def fused(params, carry, xs):
        return jaxrnn.scan(step, params, xs, carry=carry, **kwargs, **extra)

    def reference(params, carry, xs):
        return reference_scan(step, params, xs, carry=carry, **kwargs)

    def outputs_loss_and_grads(run):
        def f(*args):
            out = run(*args)
            return out, loss_weights(*out[::-1])

        @jax.jit
        def both(*args):
            (out, loss), vjp = jax.vjp(f, *args)
            return out, loss, vjp((jax.tree.map(jnp.zeros_like, out), jnp.ones_like(loss)))

        return both(params, carry, xs)

    got, want = outputs_loss_and_grads(fused), outputs_loss_and_grads(reference)
    tree_close(got[0], want[0], 1e-5, 1e-6)
    tree_close(got[1:], want[1:], 1e-4, 1e-5)


@pytest.mark.parametrize(
    ("name", "option"), [(name, "all") for name in CELLS] + [("lstm", "remat_all")]
)
def test_gradients_match_finite_differences(name, option, x64):
    params, step, xs, carry, kwargs, extra = arguments(name, option, (3,), jnp.float64, steps=5)
    if name == "rnn_relu":  # keep clear of the kink at 0
        xs = xs + 2.0

    def f(params, carry, xs):
        return jaxrnn.scan(step, params, xs, carry=carry, **kwargs, **extra)

    check_grads(jax.jit(f), (params, carry, xs), order=1, modes=["rev"])


@pytest.mark.parametrize("name", ["lstm", "gru_reset_after"])
def test_second_order_reverse(name):
    params, step, xs, carry, kwargs, _ = arguments(name, "lengths", (3,))

    def grad_norm(run):
        g = jax.grad(lambda p: jnp.sum(run(p)[1] ** 2))
        return jax.grad(lambda p: sum(jnp.sum(v**2) for v in jax.tree.leaves(g(p))))

    fused = grad_norm(lambda p: jaxrnn.scan(step, p, xs, carry=carry, **kwargs))
    reference = grad_norm(lambda p: reference_scan(step, p, xs, carry=carry, **kwargs))
    tree_close(jax.jit(fused)(params), jax.jit(reference)(params), 1e-4, 1e-5)


@pytest.mark.parametrize("name", CELLS)
def test_bfloat16(name):
    params, step, xs, carry, kwargs, _ = arguments(name, "all", (3,), jnp.bfloat16)

    def run(fn):
        return jax.jit(jax.value_and_grad(lambda p, c, xs: loss_weights(*fn(p, c, xs)[::-1])))

    fused = run(lambda p, c, xs: jaxrnn.scan(step, p, xs, carry=c, **kwargs))
    reference = run(lambda p, c, xs: reference_scan(step, p, xs, carry=c, **kwargs))
    (value, grads), (want_value, want_grads) = (
        fused(params, carry, xs),
        reference(params, carry, xs),
    )
    assert value.dtype == jnp.bfloat16
    assert all(g.dtype == jnp.bfloat16 for g in jax.tree.leaves(grads))
    tree_close(value, want_value, 0.05, 0.5)
    # bfloat16 keeps about 3 significant digits; the fused pass sums in another order.
    for g, w in zip(jax.tree.leaves(grads), jax.tree.leaves(want_grads), strict=True):
        g, w = np.asarray(g, np.float32), np.asarray(w, np.float32)
        assert np.linalg.norm(g - w) <= 0.05 * np.linalg.norm(w) + 1e-2


def test_vmap_over_params_and_sequences():
    params, step, xs, carry, kwargs, _ = arguments("lstm", "all", (3,))
    stacked = jax.tree.map(lambda a: jnp.stack([a, 0.5 * a]), params)

    def loss(run):
        return jax.vmap(jax.grad(lambda p: jnp.sum(run(p)[1] ** 2)))

    fused = loss(lambda p: jaxrnn.scan(step, p, xs, carry=carry, **kwargs))
    reference = loss(lambda p: reference_scan(step, p, xs, carry=carry, **kwargs))
    tree_close(jax.jit(fused)(stacked), jax.jit(reference)(stacked), 1e-4, 1e-5)


def test_only_built_in_steps_are_fused():
    params = jaxrnn.lstm_init(jax.random.key(0), D, H)
    assert scan_rule(jaxrnn.lstm_step, params) is not None
    assert scan_rule(lambda p, c, x: jaxrnn.lstm_step(p, c, x), params) is None
    assert scan_rule(jaxrnn.gru_step, params) is None
    assert scan_rule(jaxrnn.lstm_step, {"w": params.w_x}) is None
    mask = jnp.ones((H,))
    assert scan_rule(functools.partial(jaxrnn.lstm_step, recurrent_mask=mask), params) is not None


@pytest.mark.parametrize("steps", [0, 1])
@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_empty_and_single_step_sequences(name, steps):
    params, step, xs, carry, kwargs, _ = arguments(name, "all", (3,), steps=steps)
    kwargs.pop("lengths")

    def loss(run):
        return jax.value_and_grad(lambda p, c: loss_weights(*run(p, c)[::-1]), (0, 1))

    fused = loss(lambda p, c: jaxrnn.scan(step, p, xs, carry=c, **kwargs))
    reference = loss(lambda p, c: reference_scan(step, p, xs, carry=c, **kwargs))
    tree_close(fused(params, carry), reference(params, carry), 1e-5, 1e-6)
