"""A scan over a sequence in chunks of ``k`` steps, a last short chunk included."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from jaxrnn import _sharding


def scan_in_chunks(run, carry, inputs, k: int, *, reverse: bool = False, unroll=1):
    """``run`` over consecutive chunks of ``k`` steps of ``inputs``, in order.

    ``inputs`` is a pytree of arrays on a leading time axis of ``T`` steps (``None``
    leaves allowed); ``run(carry, chunk) -> (carry, outs)`` takes a chunk of up to
    ``k`` steps and returns outputs stacked on the chunk's own time axis. The first
    ``T // k`` chunks are one ``lax.scan`` (with ``unroll``); the last ``T mod k``
    steps are one more, shorter chunk after them (before them with ``reverse``,
    which runs the chunks from the last). Returns ``(carry, outs)`` with ``outs``
    on the ``T`` steps.
    """
    length = jax.tree.leaves(inputs)[0].shape[0]
    n = length // k
    head = jax.tree.map(
        lambda a: _sharding.reshape(a[: n * k], (n, k, *a.shape[1:]), a.ndim - 1), inputs
    )
    tail = jax.tree.map(lambda a: a[n * k :], inputs)
    parts = []
    if reverse and n * k < length:
        carry, out = run(carry, tail)
        parts.append(out)
    if n:
        carry, out = lax.scan(run, carry, head, reverse=reverse, unroll=unroll)
        out = jax.tree.map(lambda a: _sharding.reshape(a, (n * k, *a.shape[2:]), a.ndim - 2), out)
        parts.insert(0, out) if reverse else parts.append(out)
    if not reverse and n * k < length:
        carry, out = run(carry, tail)
        parts.append(out)
    if len(parts) == 1:
        return carry, parts[0]
    return carry, jax.tree.map(lambda *a: jnp.concatenate(a), *parts)
