"""The chunked input projection of the fused scan against ``lax.scan`` of the step.

A cell whose :class:`jaxrnn.FusedGradient` has ``project`` runs its forward
loops chunk by chunk: one input projection per chunk of ``K`` steps, the
chunk's steps unrolled (``jaxrnn/rules/fused.py``). ``tests/conformance``
compares that path for every cell and variant; here the LSTM's chunked path is
held, in values and gradients, to the documented loop written as ``lax.scan``
of the step and to the same rule with chunking off, for sequence lengths
around ``K = 8`` (none, fewer, exactly one chunk, a remainder), for every
option of :func:`jaxrnn.scan`, and chunked in training too.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import pytest

import jaxrnn
from tests.helpers import fast_jit, loss_weights, make, random_carry, reference_scan, tree_close

D, H, K = 4, 6, 8

OPTIONS = {
    "all": {"lengths": True, "resets": True, "reverse": True, "mask": True},
    "unroll": {"unroll": 16, "resets": True, "mask": True},
    "unroll_true": {"unroll": True, "lengths": True, "reverse": True},
}
STEPS = (0, 1, 7, 8, 9, 23)
# Every option at once around the chunk length; the other options one at a time for each
# cell in tests/conformance (at T = 33: eight chunks of 4 and a remainder of one).
FAST_STEPS = ()  # the full suite; the fast lane's conformance rows run chunks of 4 and a tail
CASES = [
    ("all", t) if t in FAST_STEPS else pytest.param("all", t, marks=pytest.mark.slow) for t in STEPS
]
# Chunks unrolled (unroll=16 over two chunks and seven steps; unroll=True over one chunk
# and one step): slow to compile.
CASES += [
    pytest.param(*case, marks=pytest.mark.slow) for case in (("unroll", 23), ("unroll_true", 9))
]


def chunked(k, rule=None, training=False):
    """The LSTM as a :class:`jaxrnn.Cell` value whose rule has ``chunk`` set to ``k``."""
    cell = jaxrnn.get_cell("lstm")
    rule = dataclasses.replace(rule or cell.scan_rule, chunk=k, chunk_training=training)
    return dataclasses.replace(cell, scan_rule=rule)


def inputs(steps, batch=(3,)):
    params = make("lstm", D, H)
    xs = jax.random.normal(jax.random.key(2), (steps, *batch, D))
    return params, xs, random_carry(params, 3, batch)


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

    @fast_jit
    def both(*args):
        (out, loss), vjp = jax.vjp(f, *args)
        return out, loss, vjp((jax.tree.map(jnp.zeros_like, out), jnp.ones_like(loss)))

    return both(*args)


@pytest.mark.parametrize(("option", "steps"), CASES)
def test_chunked_equals_lax_scan_and_the_unchunked_rule(option, steps):
    params, xs, carry = inputs(steps)
    kwargs, extra, mask = arguments(steps, option, H)

    def run(cell):
        def scan(params, carry, xs, mask):
            step = (
                cell
                if mask is None
                else dataclasses.replace(
                    cell, step=functools.partial(cell.step, recurrent_mask=mask)
                )
            )
            return jaxrnn.scan(step, params, xs, carry=carry, gradient="rule", **kwargs, **extra)

        return scan

    def reference(params, carry, xs, mask):
        step = jaxrnn.lstm_step
        if mask is not None:
            step = functools.partial(step, recurrent_mask=mask)
        return reference_scan(step, params, xs, carry=carry, **kwargs)

    args = (params, carry, xs, mask)
    got_forward = fast_jit(run(chunked(K)))(*args)  # the primal: the chunked loop
    got = outputs_loss_and_grads(run(chunked(K, training=True)), *args)  # chunked training
    unchunked = outputs_loss_and_grads(run(chunked(1)), *args)
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
    params, xs, _ = inputs(steps)

    def loops(cell, grad):
        run = lambda xs: jaxrnn.scan(cell, params, xs)
        fn = jax.grad(lambda xs: run(xs)[1].sum()) if grad else run
        return scan_lengths(jax.make_jaxpr(fn)(xs).jaxpr)

    forward_loops, train_loops = loops(chunked(K), False), loops(chunked(K), True)
    chunked_train_loops = loops(chunked(K, training=True), True)
    assert forward_loops == ([chunks] if chunks else [] if steps else [0])
    # Training: by default the step-by-step forward loop, then the backward loop.
    assert train_loops == [steps, steps]
    assert chunked_train_loops == ([chunks, steps] if chunks else [steps] if steps else [0, 0])


def test_chunk_must_be_a_positive_int_and_project_needs_its_forward():
    rule = jaxrnn.get_cell("lstm").scan_rule
    assert rule.chunk == 4  # the default: see jaxrnn/rules/fused.py
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match="chunk"):
            dataclasses.replace(rule, chunk=bad)
    with pytest.raises(ValueError, match="forward_projected"):
        dataclasses.replace(rule, forward_projected=None)
    for bad in ("w_h", ["w_h"], (1,)):  # a bare string would be read letter by letter
        with pytest.raises(TypeError, match=r"FusedGradient.transposed: expected a tuple"):
            dataclasses.replace(rule, transposed=bad)


def test_a_rule_without_project_keeps_the_plain_loop():
    """Without ``project`` the forward loop is ``lax.scan`` of the step, whatever ``chunk``."""
    params, xs, carry = inputs(9)
    rule = dataclasses.replace(
        jaxrnn.get_cell("lstm").scan_rule, project=None, forward_projected=None
    )
    run = lambda xs: jaxrnn.scan(chunked(K, rule), params, xs, carry=carry)
    assert scan_lengths(jax.make_jaxpr(run)(xs).jaxpr) == [9]
    got = run(xs)
    tree_close(got, reference_scan(jaxrnn.lstm_step, params, xs, carry=carry), 1e-5, 1e-6)
