"""Causal convolutions over a sequence whose carry holds the window of past inputs.

A cell that convolves its inputs over time (Griffin's recurrent block, Mamba's
block) streams one step at a time by carrying the last ``K - 1`` inputs. Over a
whole sequence the window each step sees is known in advance: the inputs before
it in the recurrence's order, the carry's window before the first, and nothing
from before a segment's start (the carry's ``started`` flag, as in
``jaxrnn.rules.segments``; a reset restores the initial carry's window).
These pieces compute every step's window at once, in "run order": each
sequence's steps in the recurrence's order, those that run first.
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax

from jaxrnn import _sharding


def run_order(keep, length: int, batch: tuple, reverse: bool):
    """Where each sequence's steps are in run order.

    ``keep`` (``None`` or bool ``(T, *batch)``) must mark one run of steps per
    sequence, as :func:`jaxrnn.scan`'s ``lengths`` do. Returns ``(index,
    inverse, n)``: ``a[index]`` (along time, per sequence) puts ``a`` in run
    order, ``r[inverse]`` puts a run-order ``r`` back in time order, and ``n
    (*batch)`` counts the steps that run.
    """
    t = jnp.arange(length).reshape(-1, *(1,) * len(batch))
    ordered = (length - 1 - t) if reverse else t  # the recurrence's order -> time
    if keep is None:
        first, n = jnp.zeros(batch, jnp.int32), jnp.full(batch, length, jnp.int32)
    else:
        in_order = keep[::-1] if reverse else keep
        n = jnp.sum(in_order, axis=0, dtype=jnp.int32)
        first = jnp.argmax(in_order, axis=0).astype(jnp.int32)  # padding before it
    rolled = (t + first[None]) % length  # run order -> the recurrence's order
    index = (length - 1 - rolled) if reverse else rolled
    inverse = (ordered - first[None]) % length
    full = (length, *batch)
    return jnp.broadcast_to(index, full), jnp.broadcast_to(inverse, full), n


def take(a, index):
    """``a (T, *batch, ...)`` gathered along time by ``index (S, *batch)``: ``(S, *batch, ...)``."""
    index = index.reshape(index.shape + (1,) * (a.ndim - index.ndim))
    return jnp.take_along_axis(a, jnp.broadcast_to(index, index.shape[:1] + a.shape[1:]), axis=0)


def windows(u, reset, window, started, window0, started0):
    """The window each step sees, for the ``T + 1`` positions of a run-order sequence.

    Args:
        u: ``(T, *batch, L)``, the convolution's inputs in run order.
        reset: ``None`` or bool ``(T, *batch)`` in run order.
        window, started: the carry's window ``(*batch, K - 1, L)`` (oldest first)
            and flag before the first step.
        window0, started0: the initial carry's, which a reset restores.

    Returns:
        ``(T + 1, *batch, K - 1, L)``: the ``K - 1`` inputs before step ``i``
        (oldest first) as the step sees them, zero across a segment's start; at
        ``i = n`` (the steps that ran) the window the carry ends with.
    """
    length, batch, taps = u.shape[0], u.shape[1:-1], window.shape[-2]
    pos = jnp.arange(length + 1).reshape(-1, *(1,) * len(batch))
    if reset is None:
        reset = jnp.zeros(u.shape[:-1], bool, **_sharding.out_sharding(u, _sharding.parts(u)[:-1]))
    reset = jnp.pad(reset, [(0, 1)] + [(0, 0)] * len(batch))  # padding keeps the sharding
    last = lax.cummax(jnp.where(reset, pos, -1), axis=0)  # the latest reset so far
    since = pos - jnp.maximum(last, 0)  # steps since the segment's start (or t = 0)
    seen = lambda w, s: w * s.astype(w.dtype)[..., None, None]
    source = jnp.where(
        (last >= 0)[..., None, None], seen(window0, started0)[None], seen(window, started)[None]
    )  # the window a segment's first step sees
    u = jnp.concatenate([u, jnp.zeros_like(u[:1])])
    lags = []
    for j in range(taps, 0, -1):  # the input j steps back, oldest first
        back = jnp.pad(u, [(j, 0)] + [(0, 0)] * (u.ndim - 1))[: length + 1]
        before = jnp.zeros_like(back)
        for d in range(j):  # j steps back reaches into the source window
            before = jnp.where((since == d)[..., None], source[..., taps - j + d, :], before)
        lags.append(jnp.where((since >= j)[..., None], back, before))
    return jnp.stack(lags, axis=-2)
