"""Lengths and resets: the masked loop body that both paths of ``jaxrnn.scan`` run."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxrnn import _checks


def where(mask, a, b):
    """``jnp.where`` with a batch-shaped ``mask`` broadcast over ``a``'s trailing axes."""
    mask = mask.reshape(mask.shape + (1,) * (a.ndim - mask.ndim))
    return jnp.where(mask, a, b)


def select(mask, a, b):
    """:func:`where` over two pytrees of the same structure."""
    return jax.tree.map(lambda x, y: where(mask, x, y), a, b)


def masked_body(step_fn, carry0):
    """The loop body of ``jaxrnn.scan``: resets before the step, lengths after it.

    ``step_fn(carry, x) -> (carry, y, aux)``; the body maps
    ``(carry, (x, keep, reset)) -> (carry, (y, aux))``, where ``keep`` and ``reset``
    are ``None`` or bool masks of the batch shape. Where ``reset`` the carry is
    ``carry0`` before the step; where not ``keep`` (padding) the carry passes
    through unchanged and ``y`` is zero. ``aux`` is stacked as it is.
    """

    def body(carry, inputs):
        x, keep, reset = inputs
        if reset is not None:
            carry = select(reset, carry0, carry)
        new, y, aux = step_fn(carry, x)
        if keep is not None:
            new = select(keep, new, carry)
            y = jax.tree.map(lambda leaf: where(keep, leaf, jnp.zeros_like(leaf)), y)
        return new, (y, aux)

    return body


def valid_steps(lengths, length, batch, xs_shape, *, offset=0, total=None):
    """``(T, *batch)`` bool: ``t < lengths``, exact for lengths of any integer dtype.

    ``offset`` is the index of the first of these ``T`` steps in a sequence of
    ``total`` steps (default ``T``), as on one device of a time-sharded scan.
    """
    lengths = jnp.asarray(lengths)
    if not jnp.issubdtype(lengths.dtype, jnp.integer):
        raise TypeError(f"lengths: expected an integer array, got dtype {lengths.dtype}")
    _checks.check_shape(lengths, batch, "lengths", f"the batch axes of xs {xs_shape}")
    # Clip in the lengths' own dtype (no value of it exceeds its max), then compare in
    # int32: a step counter in a narrow dtype would wrap around.
    top = min(length if total is None else total, int(jnp.iinfo(lengths.dtype).max))
    lengths = jnp.clip(lengths, 0, top).astype(jnp.int32)
    steps = jnp.arange(length, dtype=jnp.int32) + offset
    steps = steps.reshape((length,) + (1,) * len(batch))
    return steps < lengths[None]
