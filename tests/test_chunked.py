"""The chunked input projection of the fused scan against ``lax.scan`` of the step.

A cell whose :class:`jaxrnn.FusedGradient` has ``project`` runs its forward
loops chunk by chunk: one input projection per chunk of ``K`` steps, the
chunk's steps unrolled (``jaxrnn/_fused.py``). Here the chunked path is held,
in values and gradients, to the documented loop written as ``lax.scan`` of the
step (``tests/test_fused.py``) and to the same rule with chunking off, for
sequence lengths around ``K = 8`` (none, fewer, exactly one chunk, a
remainder) and every option of :func:`jaxrnn.scan` and of the LSTM.
"""

import contextlib
import dataclasses
import functools

import jax
import jax.numpy as jnp
import pytest

import jaxrnn
from jaxrnn import _cell
from tests.cells import random_carry
from tests.test_fused import loss_weights, reference_scan, tree_close

D, H, P, K = 4, 6, 3, 8
FAST = {"xla_backend_optimization_level": 0}  # the same results, compiled faster

# test case -> (cell name, init options)
VARIANTS = {
    "lstm": ("lstm", {}),
    "proj": ("lstm", {"proj_size": P}),
    "peephole": ("lstm", {"peephole": True}),
    "layer_norm": ("lstm", {"layer_norm": True}),
    "coupled": ("lstm", {"coupled": True}),
    "clip": ("lstm", {"cell_clip": 0.5}),
    "lstm_all": (
        "lstm",
        {"proj_size": P, "peephole": True, "layer_norm": True, "coupled": True, "cell_clip": 0.5},
    ),
    "gru": ("gru", {}),
    "gru_reset_after": ("gru", {"reset_after": True}),
    "gru_ln": ("gru", {"layer_norm": True}),
    "gru_ln_reset_after": ("gru", {"layer_norm": True, "reset_after": True}),
    "rnn_tanh": ("rnn", {}),
    "rnn_relu": ("rnn", {"activation": "relu"}),
}
OPTIONS = {
    "none": {},
    "reverse": {"reverse": True},
    "lengths": {"lengths": True},
    "resets": {"resets": True},
    "mask": {"mask": True},
    "all": {"lengths": True, "resets": True, "reverse": True, "mask": True},
    "unroll": {"unroll": 16, "resets": True, "mask": True},
    "unroll_true": {"unroll": True, "lengths": True, "reverse": True},
    "remat": {"remat": True, "lengths": True, "resets": True, "reverse": True},
}
STEPS = (0, 1, 7, 8, 9, 23)
CASES = [("lstm", option, steps) for steps in STEPS for option in ("none", "all")]
CASES += [
    ("lstm", option, 23) for option in OPTIONS if option not in ("none", "all", "unroll_true")
]
CASES += [("lstm", "unroll_true", 17)]  # two chunks and one step, all unrolled
CASES += [("lstm", "remat", 9)]
CASES += [(name, "all", 23) for name in VARIANTS if name != "lstm"]
CASES += [(name, "remat", 23) for name in ("lstm_all", "gru_ln", "rnn_tanh")]


@contextlib.contextmanager
def chunked(params, k, rule=None, training=False):
    """The registered cell of ``params`` with its rule's ``chunk`` set to ``k``, for a while."""
    cell = _cell.cell_of(params)
    rule = dataclasses.replace(rule or cell.scan_rule, chunk=k, chunk_training=training)
    previous = _cell._BY_TYPE[cell.params_type]
    _cell._BY_TYPE[cell.params_type] = dataclasses.replace(cell, scan_rule=rule)
    try:
        yield
    finally:
        _cell._BY_TYPE[cell.params_type] = previous


def make(name, steps, batch=(3,)):
    cell, options = VARIANTS[name]
    cell = jaxrnn.get_cell(cell)
    params = cell.init(jax.random.key(0), D, H, **options)
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(1), len(leaves))
    leaves = [  # distinct random vectors (biases, peepholes, gains), so every path counts
        a + 0.3 * jax.random.normal(k, a.shape, a.dtype) if a.ndim == 1 else a
        for a, k in zip(leaves, keys, strict=True)
    ]
    params = jax.tree.unflatten(tree, leaves)
    xs = jax.random.normal(jax.random.key(2), (steps, *batch, D))
    carry = random_carry(params, jax.random.key(3), batch)
    return cell, params, xs, carry


def arguments(steps, option, out_size):
    spec = OPTIONS[option]
    kwargs = {"reverse": spec.get("reverse", False)}
    if spec.get("lengths"):
        kwargs["lengths"] = jnp.array([steps, 0, max(steps - 3, 1)])
    if spec.get("resets"):
        kwargs["resets"] = jax.random.bernoulli(jax.random.key(5), 0.25, (steps, 3))
    extra = {k: spec[k] for k in ("remat", "unroll") if k in spec}
    mask = None
    if spec.get("mask"):
        mask = jax.random.bernoulli(jax.random.key(6), 0.7, (3, out_size)) / 0.7
    return kwargs, extra, mask


def outputs_loss_and_grads(run, *args):
    def f(*args):
        out = run(*args)
        return out, loss_weights(*out[::-1])

    @functools.partial(jax.jit, compiler_options=FAST)
    def both(*args):
        (out, loss), vjp = jax.vjp(f, *args)
        return out, loss, vjp((jax.tree.map(jnp.zeros_like, out), jnp.ones_like(loss)))

    return both(*args)


@pytest.mark.parametrize(("name", "option", "steps"), CASES)
def test_chunked_equals_lax_scan_and_the_unchunked_rule(name, option, steps):
    cell, params, xs, carry = make(name, steps)
    assert cell.scan_rule.project is not None
    out_size = jax.tree.leaves(jaxrnn.initial_carry(params, (3,)))[0].shape[-1]
    kwargs, extra, mask = arguments(steps, option, out_size)

    def step_of(mask):
        return cell.step if mask is None else functools.partial(cell.step, recurrent_mask=mask)

    def fused(params, carry, xs, mask):
        return jaxrnn.scan(step_of(mask), params, xs, carry=carry, **kwargs, **extra)

    def reference(params, carry, xs, mask):
        return reference_scan(step_of(mask), params, xs, carry=carry, **kwargs)

    args = (params, carry, xs, mask)
    forward = functools.partial(jax.jit, compiler_options=FAST)(fused)
    with chunked(params, K):
        got_forward = forward(*args)  # the primal: the chunked loop
    with chunked(params, K, training=True):  # by default training runs step by step
        got = outputs_loss_and_grads(fused, *args)
    with chunked(params, 1):
        unchunked = outputs_loss_and_grads(fused, *args)
    want = outputs_loss_and_grads(reference, *args)
    for other in (want, unchunked):
        tree_close(got_forward, other[0], 1e-5, 1e-6)
        tree_close(got[0], other[0], 1e-5, 1e-6)
        tree_close(got[1:], other[1:], 1e-4, 1e-5)


def scan_lengths(jaxpr):
    """The lengths of all ``scan`` loops in ``jaxpr``, nested ones included, in order."""
    found = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "scan":
            found.append(eqn.params["length"])
        for value in eqn.params.values():
            for sub in value if isinstance(value, tuple | list) else (value,):
                sub = getattr(sub, "jaxpr", sub)
                if hasattr(sub, "eqns"):
                    found += scan_lengths(sub)
    return found


@pytest.mark.parametrize(("steps", "chunks"), [(0, 0), (7, 0), (8, 1), (23, 2)])
def test_the_loop_runs_over_chunks(steps, chunks):
    """The forward loop has ``T // K`` iterations; the remainder runs outside it."""
    _, params, xs, _ = make("lstm", steps)

    def loops(grad):  # new functions each time: a trace is cached by function, not registry
        run = lambda xs: jaxrnn.scan(jaxrnn.lstm_step, params, xs)
        fn = jax.grad(lambda xs: run(xs)[1].sum()) if grad else run
        return scan_lengths(jax.make_jaxpr(fn)(xs).jaxpr)

    with chunked(params, K):
        forward_loops, train_loops = loops(False), loops(True)
    with chunked(params, K, training=True):
        chunked_train_loops = loops(True)
    assert forward_loops == ([chunks] if chunks else [] if steps else [0])
    # Training: by default the step-by-step forward loop, then the backward loop.
    assert train_loops == [steps, steps]
    assert chunked_train_loops == ([chunks, steps] if chunks else [steps] if steps else [0, 0])


def test_chunk_must_be_a_positive_int_and_project_needs_its_forward():
    rule = jaxrnn.get_cell("lstm").scan_rule
    assert rule.chunk == K
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match="chunk"):
            dataclasses.replace(rule, chunk=bad)
    with pytest.raises(ValueError, match="forward_projected"):
        dataclasses.replace(rule, forward_projected=None)


def test_a_rule_without_project_keeps_the_plain_loop():
    """Without ``project`` the forward loop is ``lax.scan`` of the step, whatever ``chunk``."""
    cell, params, xs, carry = make("lstm", 9)
    rule = dataclasses.replace(cell.scan_rule, project=None, forward_projected=None)
    run = lambda xs: jaxrnn.scan(jaxrnn.lstm_step, params, xs, carry=carry)
    with chunked(params, K, rule):
        assert scan_lengths(jax.make_jaxpr(run)(xs).jaxpr) == [9]
        got = run(xs)
    tree_close(got, reference_scan(jaxrnn.lstm_step, params, xs, carry=carry), 1e-5, 1e-6)
