"""minGRU and minLSTM's parallel scan beyond the conformance suite.

``jaxrnn.scan`` with these steps solves the recurrence with a blocked
associative scan (``jaxrnn/rules/linear.py``). ``tests/conformance`` holds every
option to the documented loop, time sharding included; here: large inputs,
the blocks themselves, 16384 steps, bfloat16 and the refusals.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import jaxrnn
from jaxrnn.rules import BLOCK, linear_scan
from tests.helpers import fast_jit as jit
from tests.helpers import loss_weights, outputs_and_grads, reference_scan, tree_close

D, H, T = 4, 6, 9
NAMES = ("mingru", "minlstm")


def make(name, key=0, d=D, h=H, dtype=jnp.float32):
    """Params with random biases of either sign, so every bias path counts."""
    cell = jaxrnn.get_cell(name)
    params = cell.init(jax.random.key(key), d, h, dtype=dtype)
    b = jax.random.normal(jax.random.key(key + 100), params.b.shape).astype(dtype)
    return params.__class__(w_x=params.w_x, b=b), cell.step


# The parallel scan against lax.scan of the step -------------------------------------------

OPTIONS = {
    "all": {"lengths": True, "resets": True, "reverse": True},
    "large_inputs": {"lengths": True, "resets": True, "scale": 100.0},
}
CASES = [(name, "large_inputs", (3,)) for name in NAMES]
# T not a multiple of the block length: a padded last block.
STEPS = 2 * BLOCK + 5


def arguments(name, option, batch, steps=STEPS, dtype=jnp.float32):
    params, step = make(name, dtype=dtype)
    options = OPTIONS[option]
    xs = options.get("scale", 2.0) * jax.random.normal(jax.random.key(1), (steps, *batch, D), dtype)
    carry = jax.random.normal(jax.random.key(2), (*batch, H), dtype)
    kwargs = {"reverse": options.get("reverse", False)}
    size = int(np.prod(batch))
    if options.get("lengths"):
        lengths = np.array([steps, 0, 4, steps + 3, 1, 7])[:size] if size > 1 else np.array([5])
        kwargs["lengths"] = jnp.asarray(lengths.reshape(batch))
    if options.get("resets"):
        kwargs["resets"] = jax.random.bernoulli(jax.random.key(3), 0.3, (steps, *batch))
    if options.get("remat"):
        kwargs["remat"] = True
    return params, step, xs, carry, kwargs


def test_large_inputs_equal_lax_scan_of_the_step():
    """Inputs times 100 saturate every gate; both cells in one compiled function per side."""
    cases = [arguments(*case) for case in CASES]

    def parallel(params, carry, xs, step, kw):
        return jaxrnn.scan(step, params, xs, carry=carry, gradient="rule", **kw)

    def sequential(params, carry, xs, step, kw):
        kw = {k: v for k, v in kw.items() if k != "remat"}
        return reference_scan(step, params, xs, carry=carry, **kw)

    def run(side):
        # The inputs are closed over: only arrays cross the jit boundary.
        return jit(
            lambda: [
                outputs_and_grads(functools.partial(side, step=step, kw=kw), params, carry, xs)
                for params, step, xs, carry, kw in cases
            ]
        )()

    got, want = run(parallel), run(sequential)
    for case, (_, _, xs, _, kw), g, w in zip(CASES, cases, got, want, strict=True):
        # With inputs times 100, float32 gradients of the loop itself hold ~4 digits.
        rtol = 1e-4
        try:
            tree_close(g[0], w[0], 1e-5, 1e-5)
            tree_close(g[1], w[1], rtol, 1e-5)
        except AssertionError as e:
            raise AssertionError(f"case {case}: {e}") from None
        assert all(bool(jnp.isfinite(a).all()) for a in jax.tree.leaves(g)), case
        if "lengths" in kw:  # outputs past each length are zero
            past = np.arange(xs.shape[0]).reshape((-1,) + (1,) * (xs.ndim - 2))
            past = past >= np.asarray(kw["lengths"])
            assert not np.asarray(g[0][1])[past].any(), case


def test_gradient_autodiff_runs_the_step():
    params, step, xs, _, kwargs = arguments("minlstm", "all", (3,))
    plain = str(
        jax.make_jaxpr(lambda p: jaxrnn.scan(step, p, xs, gradient="autodiff", **kwargs))(params)
    )
    fast = str(jax.make_jaxpr(lambda p: jaxrnn.scan(step, p, xs, **kwargs))(params))
    assert "custom_vjp_call" not in plain and "scan[" in plain
    assert "custom_vjp_call" in fast


def test_linear_scan_blocks_equal_the_loop(x64):
    """Every block length, dividing T or not, both directions, against lax.scan (float64)."""
    key = jax.random.split(jax.random.key(0), 3)
    a = jax.random.uniform(key[0], (23, 2, 3), jnp.float64)
    b = jax.random.normal(key[1], (23, 2, 3), jnp.float64)
    h0 = jax.random.normal(key[2], (2, 3), jnp.float64)
    variants = [(block, reverse) for block in (1, 4, 16, 23, 64) for reverse in (False, True)]

    @jit
    def both(a, b, h0):
        got, want = [], []
        for block, reverse in variants:
            got.append(linear_scan(a, b, h0, reverse=reverse, block=block))
            body = lambda h, ab: (ab[0] * h + ab[1],) * 2
            want.append(jax.lax.scan(body, h0, (a, b), reverse=reverse)[1])
        return got, want

    for variant, got, want in zip(variants, *both(a, b, h0), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12, err_msg=f"(block, reverse) {variant}")
    f = jax.jit(functools.partial(linear_scan, reverse=True, block=4))
    check_grads(f, (a, b, h0), order=1, modes=["rev"])


# Long sequences, bfloat16 ---------------------------------------------------------------


@pytest.mark.slow  # the fast lane's time: see README
def test_long_sequences_values_and_gradients():
    """T = 16384 in float32, held at 1e-5 relative to the step's loop in float64."""
    steps, d, h = 16384, 3, 4
    cells = [make(name, d=d, h=h) for name in NAMES]
    xs = jax.random.normal(jax.random.key(1), (steps, 2, d))
    carry = jax.random.normal(jax.random.key(2), (2, h))
    resets = jax.random.bernoulli(jax.random.key(3), 1e-3, (steps, 2))

    def every_cell(scan):
        def grads_and_outputs(params, carry, xs):
            def loss(params, carry, step):
                final, ys = scan(step, params, xs, carry=carry, resets=resets)
                weights = jnp.sin(0.01 * jnp.arange(steps, dtype=ys.dtype))[:, None, None]
                return jnp.sum(weights * ys) + jnp.sum(final), ys

            return [
                jax.grad(loss, (0, 1), has_aux=True)(p, carry, step)
                for p, (_, step) in zip(params, cells, strict=True)
            ]

        return jit(grads_and_outputs)

    params = [p for p, _ in cells]
    got = every_cell(jaxrnn.scan)(params, carry, xs)
    with jax.enable_x64(True):
        wide = jax.tree.map(lambda a: np.asarray(a, np.float64), (params, carry, xs))
        want = jax.tree.map(np.asarray, every_cell(reference_scan)(*wide))
    for name, (grads, ys), (want_grads, want_ys) in zip(NAMES, got, want, strict=True):
        scale = np.abs(want_ys).max()
        np.testing.assert_allclose(ys, want_ys, rtol=1e-5, atol=1e-5 * scale, err_msg=name)
        for g, w in zip(jax.tree.leaves(grads), jax.tree.leaves(want_grads), strict=True):
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5 * np.abs(w).max(), err_msg=name)


def test_bfloat16_accumulates_in_float32():
    cases = [arguments(name, "all", (3,), steps=64) for name in NAMES]

    def run(params, carry, xs, step, kwargs):
        return jaxrnn.scan(step, params, xs, carry=carry, **kwargs)

    def outputs(dtype):
        return jit(lambda: [
            run(*jax.tree.map(lambda a: a.astype(dtype), (p, c, xs)), step, kw)
            for p, step, xs, c, kw in cases
        ])()  # fmt: skip

    low, high = outputs(jnp.bfloat16), outputs(jnp.float32)
    for (final, ys), want in zip(low, high, strict=True):
        assert final.dtype == ys.dtype == jnp.bfloat16
        # Computed in float32 all along from the same bfloat16 numbers: the final cast
        # rounds, and the float32 run starts from the bfloat16 inputs rounded the same way.
        tree_close((final, ys), jax.tree.map(lambda a: a.astype(jnp.bfloat16), want), 1e-2, 1e-2)
    params, step, xs, carry, kwargs = cases[0]
    low = jax.tree.map(lambda a: a.astype(jnp.bfloat16), (params, carry, xs))
    grads = jax.eval_shape(
        jax.grad(lambda *a: loss_weights(*run(*a, step, kwargs)[::-1]), (0, 1)), *low
    )
    assert all(g.dtype == jnp.bfloat16 for g in jax.tree.leaves(grads))


def test_checks_name_the_argument():
    params, step = make("mingru")
    with pytest.raises(ValueError, match="xs: expected feature size 4"):
        jaxrnn.scan(step, params, jnp.ones((3, 2, 5)))
    with pytest.raises(ValueError, match="carry: expected shape"):
        jaxrnn.scan(step, params, jnp.ones((3, 2, D)), carry=jnp.zeros((2, H + 1)))
    with pytest.raises(ValueError, match=r"params.b: expected shape \(12,\)"):
        jaxrnn.scan(step, params.__class__(params.w_x, params.b[:5]), jnp.ones((3, D)))
    with pytest.raises(TypeError, match="x: expected dtype float32"):
        step(params, jnp.zeros(H), jnp.ones(D, jnp.bfloat16))


# Time sharding (``axis_name``): its values in tests/conformance ------------------------------


def test_time_sharding_refuses_what_it_cannot_shard():
    params, step = make("mingru")
    xs = jnp.ones((2, 4, 3, D))

    def sharded(step, params, **kwargs):
        return jax.vmap(lambda x: jaxrnn.scan(step, params, x, **kwargs), axis_name="time")(xs)

    with pytest.raises(ValueError, match=r"axis_name: .*the 'lstm' cell, whose FusedGradient"):
        lstm = jaxrnn.lstm_init(jax.random.key(0), D, H)
        sharded(jaxrnn.lstm_step, lstm, axis_name="time")
    with pytest.raises(ValueError, match=r"axis_name: .*got gradient='autodiff'"):
        sharded(step, params, axis_name="time", gradient="autodiff")
    with pytest.raises(ValueError, match="remat: a time-sharded scan"):
        sharded(step, params, axis_name="time", remat=True)
    with pytest.raises(ValueError, match="axis_name: 'seq' is not a mesh axis"):
        sharded(step, params, axis_name="seq")
    with pytest.raises(ValueError, match="axis_name: 'time' is not a mesh axis"):
        jaxrnn.scan(step, params, xs[0], axis_name="time")  # outside shard_map
    # Time split over the wrong mesh axis: read as slices it is not.
    mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]).reshape(1, 1), ("data", "time"))
    wrong = jax.shard_map(
        lambda x: jaxrnn.scan(step, params, x, axis_name="time")[1],
        mesh=mesh,
        in_specs=jax.sharding.PartitionSpec("data"),
        out_specs=jax.sharding.PartitionSpec("data"),
    )
    with pytest.raises(ValueError, match=r"xs: expected its time axis split over .*'time'"):
        wrong(xs[0])
    # Replicated (P()): every device would read the whole sequence as its slice.
    replicated = jax.shard_map(
        lambda x: jaxrnn.scan(step, params, x, axis_name="time")[1],
        mesh=jax.make_mesh((1,), ("time",)),
        in_specs=jax.sharding.PartitionSpec(),
        out_specs=jax.sharding.PartitionSpec("time"),
    )
    with pytest.raises(ValueError, match=r"xs: .*varies over no mesh axis \(replicated, P\(\)\)"):
        replicated(xs[0])
