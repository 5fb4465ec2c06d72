"""Every generic check on every built-in cell and variant (the rows of ``tests.helpers.CASES``).

Each check pits the library against something it does not share code with:
the NumPy rendering of the cell's equations, the loop of ``jaxrnn.scan``'s
docstring written as ``lax.scan`` of the step, finite differences, or the
functional core seen through another door (a module, a name, a stack).
A user runs the same checks on their own cell with ``jaxrnn.testing.check_cell``.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.test_util import check_grads

import jaxrnn
from tests import reference
from tests.helpers import (
    CASES,
    binary_mask,
    builtin_cells,
    close,
    fast_jit,
    fast_only,
    loss_weights,
    make,
    normal,
    numpy_carry,
    outputs_and_grads,
    per_position,
    random_carry,
    random_like,
    reference_scan,
    rows,
    tree_close,
)

D, H = 4, 6
T = 2 * jaxrnn.rules.BLOCK + 1  # 3 blocks of the parallel scan, 8 chunks of 4 and a tail
LENGTHS = [T, 0, 5, T + 3]  # full, empty, mid-sequence, beyond T
ids = rows()


def test_the_table_covers_every_built_in_cell():
    assert {case.cell for case in CASES.values()} == builtin_cells()


def _cell(case):
    return jaxrnn.get_cell(CASES[case].cell)


def _output_size(case):
    return CASES[case].options.get("proj_size", H)


# The step ---------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ids)
def test_step_equals_numpy(case):
    """Three steps from a random carry, with a recurrent mask if the step takes one, for
    no batch axis, one and two."""
    c, params = CASES[case], make(case, D, H)
    runs = []
    for seed, batch in enumerate([(), (3,), (2, 3)]):
        shape = (*batch, *c.spatial)
        carry = random_carry(params, 10 * seed, shape)
        xs = normal(10 * seed + 5, (3, *shape, D), scale=2.0)  # both branches of relu and g
        mask = binary_mask(seed, (*shape, _output_size(case))) if c.masked else None
        runs.append((carry, xs, mask))

    @fast_jit
    def steps(params):
        out = []
        for carry, xs, mask in runs:
            step = c.step if mask is None else functools.partial(c.step, recurrent_mask=mask)
            trace = []
            for x in xs:
                carry, y = step(params, carry, x)
                trace.append((carry, y))
            out.append(trace)
        return out

    for (carry, xs, mask), trace in zip(runs, steps(params), strict=True):
        want = numpy_carry(carry)
        for x, (got_carry, y) in zip(xs, trace, strict=True):
            want, want_y = c.reference(params, want, np.asarray(x), mask)
            assert y.shape == want_y.shape == (*x.shape[:-1], _output_size(case))
            close(y, want_y)
            close(got_carry, want)


@pytest.mark.parametrize("case", ids)
def test_gradients_equal_finite_differences(case, x64):
    """The step's own gradient and the scan's (its rule, where the cell has one), both
    against finite differences in float64."""
    c = CASES[case]
    params = make(case, 2, 4, dtype=jnp.float64)
    shape = (2, *c.spatial)
    carry = jax.tree.map(lambda a: a.astype(jnp.float64), random_carry(params, 1, shape))
    xs = normal(2, (5, *shape, 2), jnp.float64)
    lengths = per_position([5, 3], c.spatial)
    resets = per_position(np.array([[0, 0], [0, 1], [0, 0], [1, 0], [0, 0]], bool), c.spatial)
    # Finite differences across a normalisation need a looser tolerance.
    tol = {"atol": 1e-4, "rtol": 1e-4} if c.options.get("layer_norm") else {}
    check_grads(jax.jit(c.step), (params, carry, xs[0]), order=1, modes=["rev"], **tol)

    @jax.jit
    def loss(params, carry, xs):
        gradient = "rule" if c.has_rule else "auto"
        final, ys = jaxrnn.scan(
            c.step, params, xs, carry=carry, lengths=lengths, resets=resets, gradient=gradient
        )
        return jnp.sum(jnp.tanh(ys)) + sum(jnp.sum(a * a) for a in jax.tree.leaves(final))

    check_grads(loss, (params, carry, xs), order=1, modes=["rev"], **tol)


# jaxrnn.scan ------------------------------------------------------------------------------


def _scan_cases(case):
    """``{name: (step, xs, carry, options)}``: every scan option, in a few runs."""
    c, params = CASES[case], make(case, D, H)
    batch = (len(LENGTHS),)
    shape, two = (*batch, *c.spatial), (2, 3, *c.spatial)
    xs = normal(1, (T, *shape, D))
    carry = random_carry(params, 2, shape)
    lengths = per_position(LENGTHS, c.spatial)
    # Resets fall on valid and padded steps alike; a padded step ignores its reset.
    resets = per_position(np.random.default_rng(3).random((T, *batch)) < 0.2, c.spatial)
    options = {"lengths": lengths, "resets": resets}
    options_two = {
        "lengths": per_position(np.array([[T, 0, 4], [1, T + 1, 9]]), c.spatial),
        "resets": per_position(np.random.default_rng(4).random((T, 2, 3)) < 0.2, c.spatial),
    }
    step, step_two = c.step, c.step
    if c.masked:  # a recurrent mask, which the rule must take as the step does
        step = functools.partial(
            c.step, recurrent_mask=binary_mask(5, (*shape, _output_size(case)))
        )
        mask_two = binary_mask(6, (*two, _output_size(case)))
        step_two = functools.partial(c.step, recurrent_mask=mask_two)
    return params, {
        "lengths_resets": (step, xs, carry, options),
        "reverse_two_batch_axes": (
            step_two,
            normal(7, (T, *two, D)),
            random_carry(params, 8, two),
            {**options_two, "reverse": True, "unroll": 3},
        ),
        "remat": (c.step, xs, carry, {**options, "remat": True}),
        "no_options_no_batch_axis": (
            c.step,
            normal(9, (T, *c.spatial, D)),
            random_carry(params, 10, c.spatial),
            {},
        ),
        "one_step": (step, xs[:1], carry, {"lengths": lengths, "resets": resets[:1]}),
        "no_steps": (c.step, xs[:0], carry, {}),
    }


#: Each cell's first row in the table, the one whose options are the defaults or closest.
BASE_ROWS = {}
for _name, _case in CASES.items():
    BASE_ROWS.setdefault(_case.cell, _name)

#: The first row of each kind of scan rule (and of cells without one).
_FIRST_ROW_OF_RULE = list(
    {type(_cell(name).scan_rule): name for name in reversed(BASE_ROWS.values())}.values()
)

#: The checks that depend little on a cell's options (the initial carry, dtypes, the
#: modules by name) run on each cell's first row and on its rows with every option at once.
FAMILY_ROWS = rows(
    name
    for name in CASES
    if name in BASE_ROWS.values() or name in ("lstm_all", "gru_layer_norm_reset_after")
)

#: The runs whose inference path (no gradient: the fused rule's chunked input
#: projection) is compared too.
INFERENCE = ("lengths_resets", "reverse_two_batch_axes", "one_step")


@pytest.mark.parametrize("case", ids)
def test_scan_equals_the_documented_loop(case):
    """Values and gradients (params, carry, inputs) of ``jaxrnn.scan`` against the loop of
    its docstring as ``lax.scan`` of the step, for every option: lengths (0, mid, beyond T),
    resets (on padded steps too), reverse, a given carry, a recurrent mask, remat, no batch
    axis or two, one step and none. A cell with a scan rule runs it (``gradient="rule"``
    refuses to fall back to ``lax.scan``), so this holds the rule to the step."""
    c = CASES[case]
    params, runs = _scan_cases(case)
    if BASE_ROWS[c.cell] != case:
        # An option changes the step, which these two runs hold to the loop; the scan's own
        # options (remat, no batch axis, one step, none) are checked on the cell's first row.
        runs = {name: runs[name] for name in ("lengths_resets", "reverse_two_batch_axes")}
    elif case not in _FIRST_ROW_OF_RULE:
        # remat runs the rule chunk by chunk, whatever the rule: once per kind of rule.
        del runs["remat"]
    gradient = "rule" if c.has_rule else "auto"

    @fast_jit
    def scanned(params):
        out = {}
        for name, (step, xs, carry, options) in runs.items():
            run = lambda p, carry, xs, step=step, options=options: jaxrnn.scan(
                step, p, xs, carry=carry, gradient=gradient, **options
            )
            inference = run(params, carry, xs) if name in INFERENCE else None
            out[name] = (inference, outputs_and_grads(run, params, carry, xs))
        return out

    @fast_jit
    def looped(params):
        out = {}
        for name, (step, xs, carry, options) in runs.items():
            options = {k: v for k, v in options.items() if k not in ("remat", "unroll")}
            run = lambda p, carry, xs, step=step, options=options: reference_scan(
                step, p, xs, carry=carry, **options
            )
            out[name] = outputs_and_grads(run, params, carry, xs)
        return out

    got, want = scanned(params), looped(params)
    for name, (_, xs, _, options) in runs.items():
        inference, (outputs, grads) = got[name]
        try:
            if inference is not None:
                tree_close(inference, want[name][0], 1e-5, 1e-5)
            tree_close(outputs, want[name][0], 1e-5, 1e-5)
            tree_close(grads, want[name][1], 1e-4, 1e-5)
        except AssertionError as error:
            raise AssertionError(f"{case}, {name}: {error}") from None
        if "lengths" in options:  # zero past each length
            past = np.arange(xs.shape[0]).reshape((-1,) + (1,) * (xs.ndim - 2))
            assert not np.asarray(outputs[1])[past >= np.asarray(options["lengths"])].any()


@pytest.mark.parametrize("case", ids)
def test_nan_in_the_padding_changes_nothing(case):
    """NaN and Inf past each length reach neither values nor gradients, by any path."""
    c, params = CASES[case], make(case, D, H)
    lengths = np.array([8, 5, 0])
    xs = normal(1, (8, 3, *c.spatial, D))
    dirty = xs.at[5:, 1].set(jnp.nan).at[:, 2].set(jnp.inf)
    lengths = per_position(lengths, c.spatial)
    gradients = ("rule", "autodiff") if c.has_rule else ("auto",)

    @fast_jit
    def run(xs):
        def loss(params, xs, gradient, reverse):
            carry, ys = jaxrnn.scan(
                c.step, params, xs, lengths=lengths, reverse=reverse, gradient=gradient
            )
            return jnp.sum(ys**2) + sum(jnp.sum(a) for a in jax.tree.leaves(carry))

        grad = jax.value_and_grad(loss, (0, 1))
        return [grad(params, xs, g, r) for g in gradients for r in (False, True)]

    got, want = run(dirty), run(xs)
    for leaf in jax.tree.leaves(got):
        assert np.isfinite(np.asarray(leaf)).all()
    tree_close(got, want, 0, 0)


# Carries and dtypes -----------------------------------------------------------------------


@pytest.mark.parametrize("case", FAMILY_ROWS)
def test_initial_carry_is_the_zeros_a_step_returns(case):
    c, cell = CASES[case], _cell(case)
    params = make(case, D, H)
    for batch in [(), (2,), (2, 3)]:
        shape = (*batch, *c.spatial)
        carry = jaxrnn.initial_carry(params, shape)
        assert all(not np.asarray(a).any() for a in jax.tree.leaves(carry))
        tree_close(cell.initial_carry(params, shape), carry, 0, 0)
        new, y = jax.eval_shape(c.step, params, carry, jax.ShapeDtypeStruct((*shape, D), "float32"))
        assert jax.tree.structure(new) == jax.tree.structure(carry)
        for a, b in zip(jax.tree.leaves(new), jax.tree.leaves(carry), strict=True):
            assert (a.shape, a.dtype) == (b.shape, b.dtype)
        assert cell.hidden_state(carry).shape == y.shape == (*shape, _output_size(case))
    # Through the scan, carry=None is this carry.
    xs = normal(1, (3, 2, *c.spatial, D))
    zeros = jaxrnn.initial_carry(params, (2, *c.spatial))
    tree_close(jaxrnn.scan(c.cell, params, xs), jaxrnn.scan(c.step, params, xs, carry=zeros), 0, 0)


@pytest.mark.parametrize("case", FAMILY_ROWS)
def test_dtypes(case):
    """bfloat16 params and inputs give bfloat16 outputs, carries and gradients near the
    float64 NumPy values; a narrow or integer input is refused, naming it."""
    c = CASES[case]
    params = make(case, D, H, dtype=jnp.bfloat16)
    assert all(a.dtype == jnp.bfloat16 for a in jax.tree.leaves(params))
    shape = (2, *c.spatial)
    xs = normal(1, (6, *shape, D), jnp.bfloat16)
    grads, (carry, ys) = _mixed_run(c, params, xs)
    assert ys.dtype == jnp.bfloat16
    assert all(a.dtype == jnp.bfloat16 for a in jax.tree.leaves((carry, grads)))
    assert all(np.isfinite(np.asarray(a, np.float32)).all() for a in jax.tree.leaves(grads))
    _near_numpy(c, params, xs, ys)
    with pytest.raises(TypeError, match="xs: expected a floating-point array, got dtype int32"):
        jaxrnn.scan(c.step, params, jnp.ones((3, *shape, D), jnp.int32))
    wide = make(case, D, H)
    with pytest.raises(TypeError, match=r"x: expected dtype float32 .* got float16"):
        jaxrnn.scan(c.step, wide, jnp.ones((3, *shape, D), jnp.float16))


#: One row per cell for the mixed-precision check (its variants add no dtype path); the fast
#: lane runs the LSTM's (the fused rule); ``test_modules`` runs a stack and the modules.
_FIRST_ROWS = list({c.cell: name for name, c in reversed(CASES.items())}.values())


@pytest.mark.parametrize("case", fast_only(_FIRST_ROWS, ("lstm",)))
def test_mixed_precision(case):
    """``dtype=bfloat16`` on float32 params (as RecurrentGemma tests its layers): bfloat16
    outputs, a float32 carry, float32 gradients that are finite, values near the float64
    NumPy ones, through the cell's own scan rule; float16 the same forward."""
    c = CASES[case]
    params = make(case, D, H)
    xs = normal(1, (6, 2, *c.spatial, D))
    gradient = "rule" if c.has_rule else "auto"  # the rule honours the policy
    grads, (carry, ys) = _mixed_run(c, params, xs, dtype=jnp.bfloat16, gradient=gradient)
    assert ys.dtype == jnp.bfloat16
    assert all(a.dtype == jnp.float32 for a in jax.tree.leaves((carry, grads)))
    assert all(np.isfinite(np.asarray(a)).all() for a in jax.tree.leaves(grads))
    _near_numpy(c, jax.tree.map(lambda a: a.astype(jnp.bfloat16), params), xs, ys)
    carry, ys = jax.jit(lambda p, x: jaxrnn.scan(c.step, p, x, dtype=jnp.float16))(params, xs)
    assert ys.dtype == jnp.float16
    assert all(a.dtype == jnp.float32 for a in jax.tree.leaves(carry))
    _near_numpy(c, jax.tree.map(lambda a: a.astype(jnp.float16), params), xs, ys, atol=0.01)


def _mixed_run(c, params, xs, **policy):
    """Gradients and ``(carry, ys)`` of a scan of ``c`` under ``policy``."""

    @fast_jit
    def run(params, xs):
        def loss(params, xs):
            carry, ys = jaxrnn.scan(c.step, params, xs, **policy)
            return jnp.sum(ys.astype(jnp.float32) ** 2), (carry, ys)

        return jax.grad(loss, (0, 1), has_aux=True)(params, xs)

    return run(params, xs)


def _near_numpy(c, params, xs, ys, atol=0.08):
    """``ys`` near the NumPy loop in float64 from ``params`` and ``xs`` as rounded."""
    shape = xs.shape[1:-1]
    want = numpy_carry(jaxrnn.initial_carry(params, shape))
    xs = np.asarray(xs.astype(params_dtype(params)), np.float32)
    for t, x in enumerate(xs):
        want, y = c.reference(params, want, x)
        np.testing.assert_allclose(np.asarray(ys[t], np.float32), y, atol=atol, rtol=0.05)


def params_dtype(params):
    return jax.tree.leaves(params)[0].dtype


# Stacks and modules -----------------------------------------------------------------------


def _stack(case, num_layers=2):
    c = CASES[case]
    shapes = jax.eval_shape(
        lambda k: jaxrnn.stack_init(
            k, c.cell, D, H, num_layers=num_layers, bidirectional=True, **c.options
        ),
        jax.random.key(0),
    )
    return random_like(shapes, 3)


@pytest.mark.parametrize("case", ids)
def test_bidirectional_stack_equals_numpy(case):
    """Two bidirectional layers over sequences of three lengths, against the NumPy step
    run over each sequence's valid steps, forwards and backwards; the cell given by name,
    as a value and by its step alike."""
    c = CASES[case]
    layers = _stack(case)
    xs = normal(1, (6, 3, *c.spatial, D))
    lengths = np.array([6, 2, 0])
    spread = per_position(lengths, c.spatial)

    @fast_jit
    def run(layers):
        return [
            jaxrnn.stack_scan(step, layers, xs, lengths=spread)
            for step in (c.cell, _cell(case), c.step)
        ]

    by_name, by_value, by_step = run(layers)
    tree_close(by_value, by_name, 0, 0)
    tree_close(by_step, by_name, 0, 0)
    carry, ys = by_name
    zero = lambda p: numpy_carry(jaxrnn.initial_carry(p, c.spatial))
    want_carry, want_ys = reference.stack(c.reference, layers, xs, lengths, zero)
    assert ys.shape == (6, 3, *c.spatial, 2 * _output_size(case))
    close(ys, want_ys)
    for k in range(2):
        for j in range(2):
            close(carry[k][j], [np.stack(leaf) for leaf in _by_leaf(want_carry[k][j])])


def _by_leaf(per_sequence):
    """[carry per sequence] -> the carry's leaves, each a list over sequences."""
    if isinstance(per_sequence[0], tuple):
        return [list(leaf) for leaf in zip(*per_sequence, strict=True)]
    return [per_sequence]


@pytest.mark.parametrize("case", FAMILY_ROWS)
def test_both_module_families_by_name(case):
    """``nnx.Recurrent`` and ``linen.Recurrent`` built by the cell's name with the case's
    options: the parameters ``stack_init`` gives, and on given layers the call equals
    ``stack_scan`` on batch-major inputs. The one-step cells equal the step."""
    c, cell = CASES[case], _cell(case)
    layers = _stack(case, num_layers=1)
    x = normal(1, (3, 5, *c.spatial, D))  # (B, T, *spatial, d)
    lengths = jnp.array([5, 2, 0])
    built = nnx.eval_shape(
        lambda: jaxrnn.nnx.Recurrent(
            c.cell, D, H, bidirectional=True, rngs=nnx.Rngs(0), **c.options
        )
    )
    built_shapes = sorted(a.shape for a in jax.tree.leaves(nnx.state(built)))
    assert built_shapes == sorted(a.shape for a in jax.tree.leaves(layers))
    linen = jaxrnn.linen.Recurrent(H, cell=c.cell, cell_options=c.options, bidirectional=True)
    shapes = linen.to_layers(jax.eval_shape(linen.init, jax.random.key(0), x))
    assert jax.tree.structure(shapes) == jax.tree.structure(layers)
    for got, want in zip(jax.tree.leaves(shapes), jax.tree.leaves(layers), strict=True):
        assert got.shape == want.shape
    params = layers[0][0]
    carry = random_carry(params, 2, (3, *c.spatial))
    linen_cell = jaxrnn.linen.RecurrentCell(H, cell=c.cell, cell_options=c.options)

    @fast_jit
    def run(layers):
        model = jaxrnn.nnx.Recurrent(c.cell, None, None, layers=layers)
        spread = per_position(lengths, c.spatial)
        want = jaxrnn.stack_scan(c.step, layers, jnp.moveaxis(x, 1, 0), lengths=spread)[1]
        nnx_cell = jaxrnn.nnx.RecurrentCell(c.cell, None, None, params=params)
        return (
            model(x, lengths=lengths),
            linen.apply(linen.variables_from_layers(layers), x, lengths=lengths),
            jnp.moveaxis(want, 0, 1),
            nnx_cell(carry, x[:, 0]),
            linen_cell.apply(linen_cell.variables_from_params(params), carry, x[:, 0]),
            c.step(params, carry, x[:, 0]),
        )

    got_nnx, got_linen, want, nnx_step, linen_step, step = run(layers)
    tree_close(got_nnx, want, 1e-6, 1e-6)
    tree_close(got_linen, want, 1e-6, 1e-6)
    tree_close(nnx_step, step, 0, 0)
    tree_close(linen_step, step, 0, 0)
    zeros = jaxrnn.initial_carry(params, (3, *c.spatial))
    tree_close(linen_cell.initial_carry((3, *c.spatial)), zeros, 0, 0)
    model = jaxrnn.nnx.Recurrent(c.cell, None, None, layers=layers)
    tree_close(
        model.initial_carry((3, *c.spatial)), jaxrnn.initial_carry(layers, (3, *c.spatial)), 0, 0
    )
    assert cell.name == c.cell


# Time sharding ----------------------------------------------------------------------------
# ``jax.vmap`` with an axis name runs the collectives that n devices would, so the carry
# correction is checked here for any device count; tests/test_sharding.py runs it on 4
# (host) devices.

_SHARDED_NAMES = [c for c in CASES if getattr(_cell(c).scan_rule, "time_sharding", False)]
SHARDED = rows(_SHARDED_NAMES)


def _time_sharded(step, params, xs, resets, *, devices, **options):
    """``jaxrnn.scan`` with the time axis of ``xs`` and ``resets`` cut into ``devices``
    slices, one per member of a vmapped axis named "time": ``(final carry of each
    device, ys)``."""

    def cut(a):
        return a.reshape(devices, a.shape[0] // devices, *a.shape[1:])

    def one(xs, resets):
        return jaxrnn.scan(step, params, xs, resets=resets, axis_name="time", **options)

    final, ys = jax.vmap(one, axis_name="time")(cut(xs), cut(resets))
    return final, ys.reshape(-1, *ys.shape[2:])


#: The first time-sharded row of each kind of scan rule.
_FIRST_OF_RULE = list({type(_cell(c).scan_rule): c for c in reversed(_SHARDED_NAMES)}.values())


@pytest.mark.parametrize("case", SHARDED)
def test_time_sharded_scan_equals_the_documented_loop(case):
    """Slices of 7 steps on 3 devices, in reverse, and of 37 (above a block) on 5, forward,
    with an int8 length ending inside a middle slice, one of 0 and one beyond T, resets
    and a given carry: values, gradients, and the same final carry on every device. A row
    whose scan rule an earlier row has checked so runs one layout: 19 steps (above a
    block) on 3 devices, in reverse."""
    c, params = CASES[case], make(case, D, H)
    runs = [(3, 7, True), (5, 37, False)]  # (devices, steps per device, reverse)
    if case not in _FIRST_OF_RULE:
        runs = [(3, 19, True)]
    inputs = []
    for k, (devices, steps, _) in enumerate(runs):
        length = devices * steps
        inputs.append(
            (
                random_carry(params, 10 + k, (3,)),
                normal(k, (length, 3, D)),
                jnp.array([length // 2 + 1, 0, 127], jnp.int8),
                jnp.asarray(np.random.default_rng(k).random((length, 3)) < 0.1),
            )
        )

    def loss(scan, run, params, carry, xs, lengths, resets):
        options = dict(carry=carry, lengths=lengths, reverse=run[2])
        final, ys = scan(params, xs, resets, run[0], options)
        return loss_weights(ys, final), (final, ys)

    def sharded(params, xs, resets, devices, options):
        # Every device's final carry goes out with the loss of the first one's.
        finals, ys = _time_sharded(c.step, params, xs, resets, devices=devices, **options)
        return (jax.tree.map(lambda a: a[0], finals), finals), ys

    def sharded_loss(run, params, carry, xs, lengths, resets):
        options = dict(carry=carry, lengths=lengths, reverse=run[2])
        (first, finals), ys = sharded(params, xs, resets, run[0], options)
        return loss_weights(ys, first), ((first, ys), finals)

    def looped(params, xs, resets, devices, options):
        return reference_scan(c.step, params, xs, resets=resets, **options)

    @fast_jit
    def both(params):
        return [
            (
                jax.value_and_grad(sharded_loss, (1, 2, 3), has_aux=True)(run, params, *data),
                jax.value_and_grad(loss, (2, 3, 4), has_aux=True)(looped, run, params, *data),
            )
            for run, data in zip(runs, inputs, strict=True)
        ]

    for run, (got, want) in zip(runs, both(params), strict=True):
        (value, (outputs, finals)), grads = got
        for k in range(run[0]):  # the same final carry on every device
            for leaf in jax.tree.leaves(finals):
                np.testing.assert_array_equal(leaf[k], leaf[0])
        try:  # gradients sum over devices in another order: as loose as the unsharded test's
            tree_close((value, outputs), want[0], 1e-5, 1e-5)
            tree_close(grads, want[1], 1e-4, 1e-5)
        except AssertionError as error:
            raise AssertionError(f"{case}, (devices, steps, reverse) {run}: {error}") from None
