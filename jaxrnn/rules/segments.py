"""Segments: a linear recurrence whose first step of a segment is a different step.

RecurrentGemma's RG-LRU computes the first step of a document (``segment_pos
== 0``) with ``A = 0`` and the input unscaled, not as the ordinary step from a
zero state. A pure step can only tell the two apart through its carry, so such
a cell carries a flag beside its state: :class:`SegmentState`. The zero carry
(``started = 0``) is a segment's start; every step leaves ``started = 1``; a
reset restores the initial carry, and so starts a segment again, exactly as a
zero ``segment_pos`` does.

Over a whole sequence the flag each step sees is known in advance: the incoming
carry's flag until the first step that runs (in the recurrence's order), then
1, and the initial carry's flag at a reset. :func:`segment_flags` computes it
for every step at once, so :class:`jaxrnn.LinearRecurrence` (with
``segments=True``) can hand it to the cell's coefficients and still solve the
recurrence in parallel.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from jaxrnn._masking import where


class SegmentState(NamedTuple):
    """The carry of a cell whose first step of a segment differs (the RG-LRU).

    ``h`` is the state ``H_t`` (the output); ``started`` is 0 before a segment's
    first step and 1 after it, one value per sequence. Values in between
    interpolate the two kinds of step (the step is linear in ``started``), so
    gradients with respect to it are defined, but only 0 and 1 mean anything.
    """

    h: jax.Array  # H_t (*batch, h)
    started: jax.Array  # (*batch,), 0 at a segment's start, 1 inside one


def segment_flags(started, started0, keep, reset, length, *, reverse, axis_name=None):
    """The flag each step reads, and the flag after the last step.

    Args:
        started: ``(*batch)``, the flag of the carry before the first step (in
            the recurrence's order).
        started0: ``(*batch)``, the flag of the carry that a reset restores.
        keep: ``None`` or bool ``(T, *batch)``: the steps that run.
        reset: ``None`` or bool ``(T, *batch)``.
        length: ``T`` (of this device's slice, with ``axis_name``).
        reverse: the recurrence runs from ``t = T - 1`` down.
        axis_name: the mesh axis the time axis is split over, or ``None``.

    Returns:
        ``(flags (T, *batch), final (*batch))`` in ``started``'s dtype.
    """
    batch = started.shape
    ran = jnp.ones((length, *batch), bool) if keep is None else keep
    ordered = ran[::-1] if reverse else ran
    counts = jnp.cumsum(ordered, axis=0, dtype=jnp.int32)
    earlier = counts - ordered > 0  # a step ran before this one, on this slice
    earlier = earlier[::-1] if reverse else earlier
    ran_here = counts[-1] > 0 if length else jnp.zeros(batch, bool)
    ran_any = ran_here
    if axis_name is not None:
        ran_all = lax.all_gather(ran_here, axis_name)  # (devices, *batch)
        index = lax.axis_index(axis_name)
        devices = jnp.arange(ran_all.shape[0]).reshape(-1, *(1,) * len(batch))
        before = devices > index if reverse else devices < index
        earlier = earlier | jnp.any(ran_all & before, axis=0)[None]
        # A sum over the devices is the same on every one of them, as shard_map needs.
        ran_any = lax.psum(ran_here.astype(jnp.int32), axis_name) > 0
    one = jnp.ones_like(started)
    flags = jnp.where(earlier, one[None], started[None])
    if reset is not None:
        flags = where(reset, jnp.broadcast_to(started0, flags.shape), flags)
    return flags, jnp.where(ran_any, one, started)
