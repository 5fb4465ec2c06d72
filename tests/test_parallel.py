"""minGRU and minLSTM: the steps against NumPy, the parallel scan against ``lax.scan`` of the step.

``jaxrnn.scan`` with these steps solves the recurrence with an associative scan
(``jaxrnn/_linear_scan.py``). Every option is held to the documented loop as
``lax.scan`` of the step (``tests/test_fused.py``'s ``reference_scan``), values
and gradients; the steps themselves to the equations written out in NumPy.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.test_util import check_grads

import jaxrnn
from jaxrnn._cell import scan_rule
from jaxrnn._linear_scan import BLOCK, linear_scan
from tests.test_fused import loss_weights, reference_scan, tree_close

D, H, T = 4, 6, 9
NAMES = ("mingru", "minlstm")
# Compiling is most of these tests' time; LLVM's optimisations are most of compiling.
jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})


def make(name, key=0, d=D, h=H, dtype=jnp.float32):
    """Params with random biases of either sign, so every bias path counts."""
    cell = jaxrnn.get_cell(name)
    params = cell.init(jax.random.key(key), d, h, dtype=dtype)
    b = jax.random.normal(jax.random.key(key + 100), params.b.shape).astype(dtype)
    return params.__class__(w_x=params.w_x, b=b), cell.step


# NumPy, float64, from the formulas -----------------------------------------------------


def sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def g(a):
    return np.where(a >= 0, a + 0.5, sigmoid(a))


def blocks(p, x, gates):
    w, b = np.asarray(p.w_x, np.float64), np.asarray(p.b, np.float64)
    n = w.shape[1] // gates
    return [np.asarray(x, np.float64) @ w[:, k * n : (k + 1) * n] + b[k * n : (k + 1) * n]
            for k in range(gates)]  # fmt: skip


def numpy_mingru(p, h, x):
    a_z, a_h = blocks(p, x, 2)
    z, candidate = sigmoid(a_z), g(a_h)
    return (1 - z) * h + z * candidate


def numpy_minlstm(p, h, x):
    a_f, a_i, a_h = blocks(p, x, 3)
    f, i, candidate = sigmoid(a_f), sigmoid(a_i), g(a_h)
    return f / (f + i) * h + i / (f + i) * candidate


NUMPY = {"mingru": numpy_mingru, "minlstm": numpy_minlstm}


@pytest.mark.parametrize("batch", [(), (3,), (2, 3)])
@pytest.mark.parametrize("name", NAMES)
def test_step_equals_numpy(name, batch):
    params, step = make(name)
    xs = 2 * jax.random.normal(jax.random.key(1), (5, *batch, D))  # both branches of g
    h = jax.random.normal(jax.random.key(2), (*batch, H))
    want = np.asarray(h, np.float64)
    for x in xs:
        h, y = jit(step)(params, h, x)
        want = NUMPY[name](params, want, x)
        assert h.shape == y.shape == (*batch, H) and h.dtype == jnp.float32
        np.testing.assert_array_equal(h, y)
        np.testing.assert_allclose(h, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_step_gradients_order_2(name, x64):
    params, step = make(name, dtype=jnp.float64)
    x = jax.random.normal(jax.random.key(1), (3, D), jnp.float64)
    h = jax.random.normal(jax.random.key(2), (3, H), jnp.float64)
    check_grads(jax.jit(step), (params, h, x), order=2, modes=["fwd", "rev"])


# The parallel scan against lax.scan of the step -------------------------------------------

OPTIONS = {
    "none": {},
    "reverse": {"reverse": True},
    "lengths": {"lengths": True},
    "resets": {"resets": True},
    "all": {"lengths": True, "resets": True, "reverse": True},
    "remat_reverse": {"remat": True, "lengths": True, "resets": True, "reverse": True},
    "large_inputs": {"lengths": True, "resets": True, "scale": 100.0},
}
# Each option for minGRU, with every one at once (plain and chunked by remat); minLSTM
# shares the rule, so all at once and large inputs; the odd batch shapes for one each.
CASES = [
    ("mingru", option, (3,))
    for option in ("none", "reverse", "lengths", "resets", "all", "remat_reverse", "large_inputs")
]
CASES += [("minlstm", option, (3,)) for option in ("all", "large_inputs")]
CASES += [("mingru", "all", ()), ("minlstm", "all", (2, 3))]
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


def outputs_and_grads(run, params, carry, xs):
    """``run``'s outputs, and the gradients of a loss weighing each output differently."""

    def loss(params, carry, xs):
        final, ys = run(params, carry, xs)
        return loss_weights(ys, final), (final, ys)

    grads, outputs = jax.grad(loss, (0, 1, 2), has_aux=True)(params, carry, xs)
    return outputs, grads


def test_parallel_equals_lax_scan_of_the_step():
    """All cases in one compiled function per side (compiling is what takes the time)."""
    cases = [arguments(*case) for case in CASES]

    def parallel(params, carry, xs, step, kw):
        return jaxrnn.scan(step, params, xs, carry=carry, **kw)

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
    for case, (params, step, xs, _, kw), g, w in zip(CASES, cases, got, want, strict=True):
        assert scan_rule(step, params) is not None
        # With inputs times 100, float32 gradients of the loop itself hold ~4 digits.
        rtol = 1e-4 if case[1] == "large_inputs" else 1e-5
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


def test_short_sequences():
    """T = 0 and T = 1, lengths 0 and beyond T, against the step's loop."""

    def both(run):
        @jit
        def f(params, carry, empty, one):
            kw = {"resets": jnp.ones((1, 3), bool), "lengths": jnp.array([1, 0, 2])}
            return (
                outputs_and_grads(lambda p, c, xs: run(p, c, xs, {}), params, carry, empty),
                outputs_and_grads(lambda p, c, xs: run(p, c, xs, kw), params, carry, one),
            )

        return f

    params, step, xs, carry, _ = arguments("mingru", "none", (3,), steps=1)
    parallel = both(lambda p, c, xs, kw: jaxrnn.scan(step, p, xs, carry=c, **kw))
    sequential = both(lambda p, c, xs, kw: reference_scan(step, p, xs, carry=c, **kw))
    args = (params, carry, xs[:0], xs)
    tree_close(parallel(*args), sequential(*args), 1e-5, 1e-6)


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


# Stacks and modules -----------------------------------------------------------------------


def test_bidirectional_stack_equals_the_step_loop():
    layers = jaxrnn.stack_init(
        jax.random.key(0), jaxrnn.minlstm_init, D, H, num_layers=2, bidirectional=True
    )
    xs = jax.random.normal(jax.random.key(1), (STEPS, 3, D))
    lengths = jnp.array([STEPS, 4, 0])
    resets = jax.random.bernoulli(jax.random.key(2), 0.2, (STEPS, 3))

    def loss(gradient, layers):
        carry, ys = jaxrnn.stack_scan(
            jaxrnn.minlstm_step, layers, xs, lengths=lengths, resets=resets, gradient=gradient
        )
        return loss_weights(ys, carry)

    got = jit(jax.value_and_grad(functools.partial(loss, "auto")))(layers)
    want = jit(jax.value_and_grad(functools.partial(loss, "autodiff")))(layers)
    tree_close(got, want, 1e-5, 1e-5)


def test_nnx_and_linen_recurrent():
    x = jax.random.normal(jax.random.key(1), (3, STEPS, D))  # batch-major
    lengths = jnp.array([STEPS, 5, 1])
    model = jaxrnn.nnx.Recurrent("mingru", D, H, num_layers=2, rngs=nnx.Rngs(0))
    layers = model.to_layers()
    want = jit(
        lambda layers: jaxrnn.stack_scan(
            jaxrnn.mingru_step, layers, jnp.moveaxis(x, 1, 0), lengths=lengths, gradient="autodiff"
        )[1]
    )(layers)
    want = jnp.moveaxis(want, 0, 1)
    tree_close(nnx.jit(lambda model: model(x, lengths=lengths))(model), want, 1e-5, 1e-6)

    linen = jaxrnn.linen.Recurrent(H, cell="mingru", num_layers=2)
    initialised = jax.eval_shape(linen.init, jax.random.key(0), x)
    assert isinstance(linen.to_layers(initialised)[1][0], jaxrnn.MinGRUParams)
    apply = jit(lambda variables: linen.apply(variables, x, lengths=lengths))
    tree_close(apply(linen.variables_from_layers(layers)), want, 1e-5, 1e-6)


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


# Time sharding (``axis_name``) ------------------------------------------------------------
# ``jax.vmap`` with an axis name runs the same collectives as n devices would, so the carry
# correction is checked here for any device count; tests/test_sharding.py runs it on 4 real
# (host) devices at T=4096.


def time_sharded(step, params, xs, *, devices, **kwargs):
    """``jaxrnn.scan`` with the time axis of ``xs`` (and ``resets``) cut into ``devices``
    slices, one per member of a vmapped axis named "time": ``(final carry of each
    device, ys)``."""

    def cut(a):
        return a.reshape(devices, a.shape[0] // devices, *a.shape[1:])

    resets = kwargs.pop("resets", None)

    def one(xs, resets):
        return jaxrnn.scan(step, params, xs, resets=resets, axis_name="time", **kwargs)

    final, ys = jax.vmap(one, axis_name="time", in_axes=(0, None if resets is None else 0))(
        cut(xs), None if resets is None else cut(resets)
    )
    return final, ys.reshape(-1, *ys.shape[2:])


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(("devices", "steps"), [(3, 7), (5, 37)])
@pytest.mark.parametrize("reverse", [False, True])
def test_a_time_sharded_scan_equals_the_step_loop(name, devices, steps, reverse):
    params, step = make(name)
    length = devices * steps
    xs = jax.random.normal(jax.random.key(1), (length, 3, D))
    carry = jax.random.normal(jax.random.key(2), (3, H))
    # One sequence ends inside a middle slice, one at 0, one beyond T; an int8 count.
    lengths = jnp.array([length // 2 + 1, 0, 127], jnp.int8)
    resets = jax.random.bernoulli(jax.random.key(3), 0.1, (length, 3))
    kwargs = dict(carry=carry, lengths=lengths, resets=resets, reverse=reverse)

    def loss(scan, params, carry, xs):
        final, ys = scan(step, params, xs, **{**kwargs, "carry": carry})
        return loss_weights(ys, final), (final, ys)

    def sharded(*args, **kwargs):
        final, ys = time_sharded(*args, devices=devices, **kwargs)
        return final[0], ys

    finals = time_sharded(step, params, xs, devices=devices, **kwargs)[0]
    for k in range(1, devices):  # the final carry is the same on every device
        np.testing.assert_array_equal(finals[k], finals[0])
    got = jit(jax.value_and_grad(functools.partial(loss, sharded), (0, 1, 2), has_aux=True))
    want = jit(jax.value_and_grad(functools.partial(loss, reference_scan), (0, 1, 2), has_aux=True))
    tree_close(got(params, carry, xs), want(params, carry, xs), rtol=1e-5, atol=1e-5)


def test_time_sharding_refuses_what_it_cannot_shard():
    params, step = make("mingru")
    xs = jnp.ones((2, 4, 3, D))

    def sharded(step, params, **kwargs):
        return jax.vmap(lambda x: jaxrnn.scan(step, params, x, **kwargs), axis_name="time")(xs)

    with pytest.raises(ValueError, match=r"axis_name: sharding the time axis needs .*'lstm_step'"):
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
