"""The scan driver: ``lax.scan`` of a step, plus lengths, resets, reversal and remat."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from jaxrnn import _checks, _fused
from jaxrnn._carry import initial_carry
from jaxrnn._masking import masked_body

Step = Callable[[Any, Any, jax.Array], tuple[Any, Any]]


def scan(
    step: Step,
    params,
    xs: jax.Array,
    *,
    carry=None,
    lengths: jax.Array | None = None,
    resets: jax.Array | None = None,
    reverse: bool = False,
    unroll: int | bool = 1,
    remat: bool = False,
):
    """Runs ``step`` over the leading (time) axis of ``xs``.

    With no options this is exactly ``lax.scan(functools.partial(step, params), carry, xs)``,
    for the built-in steps and for any user function ``step(params, carry, x) -> (carry, y)``.
    The options handle what real data needs; their meaning is this plain loop::

        carry0 = carry
        order = reversed(range(T)) if reverse else range(T)
        for t in order:
            if resets is not None and resets[t]:
                carry = carry0                        # a new episode starts at t
            new_carry, y = step(params, carry, xs[t])
            if lengths is None or t < lengths:        # per sequence in the batch
                carry, ys[t] = new_carry, y
            else:
                ys[t] = 0                             # padding: carry is left alone

    So with ``lengths`` the final carry is the state after each sequence's last
    valid step, and with ``reverse=True`` each sequence's valid prefix runs from
    its last valid step back to step 0, outputs staying at their positions.
    Lengths beyond ``T`` act as ``T``; negative lengths act as 0.

    Args:
        step: ``step(params, carry, x) -> (carry, y)``, e.g. :func:`jaxrnn.lstm_step`.
        params: the step's parameters.
        xs: inputs, time-major, shape ``(T, *batch, d)``.
        carry: initial carry, leaves of shape ``(*batch, ...)``; ``None`` means
            :func:`jaxrnn.initial_carry` (zeros).
        lengths: optional integer array of shape ``batch``: the number of valid
            (left-aligned) steps of each sequence.
        resets: optional bool array of shape ``(T, *batch)``: where true the carry
            is set back to the initial carry before that step (packed episodes).
        reverse: run from ``t = T - 1`` down to 0.
        unroll: passed to :func:`jax.lax.scan`.
        remat: recompute activations in the backward pass. Time is cut into
            about ``sqrt(T)`` chunks and only the carries between chunks are kept,
            so training memory beyond ``xs`` and ``ys`` grows as ``sqrt(T)``
            rather than ``T``, for about one extra forward pass. Values and
            gradients are unchanged.

    Returns:
        ``(final_carry, ys)`` with ``ys`` of shape ``(T, *batch, h)``.

    With a built-in step (:func:`jaxrnn.rnn_step`, :func:`jaxrnn.lstm_step`,
    :func:`jaxrnn.gru_step`) the reverse-mode gradient is a hand-written
    backward pass through time: its loop carries only the carry's cotangent and
    the weight gradients are single matmuls over all steps, which is faster
    than differentiating each step. Values and gradients are those of the
    plain loop. Being a ``jax.custom_vjp``, it has no forward mode: for
    ``jax.jvp`` or ``jax.jacfwd``, pass the step wrapped in a function of your
    own (``lambda p, c, x: jaxrnn.lstm_step(p, c, x)``), which runs the plain
    ``lax.scan`` and supports every mode.

    Example:
        >>> import jax, jax.numpy as jnp, jaxrnn
        >>> p = jaxrnn.gru_init(jax.random.key(0), 3, 5)
        >>> xs = jnp.ones((6, 2, 3))  # (T, B, d)
        >>> carry, ys = jaxrnn.scan(jaxrnn.gru_step, p, xs, lengths=jnp.array([6, 2]))
        >>> ys.shape, bool((ys[2:, 1] == 0).all())
        ((6, 2, 5), True)
    """
    xs = _checks.as_floating(xs, "xs")
    if xs.ndim < 2:
        raise ValueError(
            f"xs: expected a time-major array of shape (T, *batch, d), got shape {xs.shape}"
        )
    length, batch = xs.shape[0], tuple(xs.shape[1:-1])
    input_size = getattr(params, "input_size", None)
    if isinstance(input_size, int):
        _checks.check_features(xs, input_size, "xs")
    if carry is None:
        carry = initial_carry(params, batch)

    valid = None
    if lengths is not None:
        lengths = jnp.asarray(lengths)
        if not jnp.issubdtype(lengths.dtype, jnp.integer):
            raise TypeError(f"lengths: expected an integer array, got dtype {lengths.dtype}")
        _checks.check_shape(lengths, batch, "lengths", f"the batch axes of xs {xs.shape}")
        steps = jnp.arange(length, dtype=lengths.dtype).reshape((length,) + (1,) * len(batch))
        valid = steps < lengths[None]
        _check_batch_leading(carry, batch, "carry", "lengths")
    if resets is not None:
        resets = jnp.asarray(resets)
        if resets.dtype != jnp.bool_:
            raise TypeError(f"resets: expected a bool array, got dtype {resets.dtype}")
        _checks.check_shape(
            resets, (length, *batch), "resets", f"the (T, *batch) axes of xs {xs.shape}"
        )
        _check_batch_leading(carry, batch, "carry", "resets")

    carry0 = carry
    inputs = (xs, valid, resets)
    cell = _fused.lookup(step, params)
    if cell is not None:
        # The step's own trace-time checks, with its messages; the fused gradient
        # below would otherwise skip them.
        x = jax.ShapeDtypeStruct(xs.shape[1:], xs.dtype)
        jax.eval_shape(functools.partial(step, params), carry, x)

        def loop(carry, inputs):
            x, keep, reset = inputs
            return _fused.scan(cell, params, carry, carry0, x, keep, reset, reverse, unroll)

    else:
        body = masked_body(lambda c, x: (*step(params, c, x), None), carry0)

        def loop(carry, inputs):
            final, (ys, _) = lax.scan(body, carry, inputs, reverse=reverse, unroll=unroll)
            return final, ys

    if remat and length > 1:
        return _chunked_remat_scan(loop, carry, inputs, length, reverse)
    return loop(carry, inputs)


def _chunked_remat_scan(loop, carry, inputs, length, reverse):
    """``loop(carry, inputs)`` (a scan over time) with sqrt(T) checkpointing (Chen et al. 2016).

    The outer scan runs over chunks of ``k = ceil(sqrt(T))`` steps and keeps only
    each chunk's incoming carry; a chunk's activations are rebuilt in the
    backward pass. A last partial chunk of ``T mod k`` steps runs on its own.
    """
    k = math.isqrt(length - 1) + 1
    n = length // k

    run = jax.checkpoint(loop, prevent_cse=False)
    head = jax.tree.map(lambda a: a[: n * k].reshape((n, k, *a.shape[1:])), inputs)
    tail = jax.tree.map(lambda a: a[n * k :], inputs)
    has_tail = n * k < length

    if reverse and has_tail:
        carry, ys_tail = run(carry, tail)
    carry, ys_head = lax.scan(run, carry, head, reverse=reverse)
    if not reverse and has_tail:
        carry, ys_tail = run(carry, tail)

    ys = jax.tree.map(lambda a: a.reshape((n * k, *a.shape[2:])), ys_head)
    if has_tail:
        ys = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), ys, ys_tail)
    return carry, ys


def _check_batch_leading(carry, batch, name, option):
    for path, leaf in jax.tree_util.tree_leaves_with_path(carry):
        shape = tuple(jnp.shape(leaf))
        if shape[: len(batch)] != batch:
            where = name + jax.tree_util.keystr(path)
            raise ValueError(
                f"{where}: with {option}, every carry leaf must start with the batch axes "
                f"{batch} of xs, got shape {shape}"
            )
