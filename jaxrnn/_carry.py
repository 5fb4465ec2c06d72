"""The zero carry of a cell, dispatched on the type of its params."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax.numpy as jnp


@functools.singledispatch
def initial_carry(params, batch_shape: Sequence[int] = ()):
    """Zero carry for ``params``, with leading ``batch_shape`` axes.

    Built-in cells give an array of shape ``(*batch_shape, h)`` (RNN, GRU) or a
    :class:`LSTMState` of two such arrays, in the params' dtype.

    A custom cell can take part (and so get ``carry=None`` in :func:`jaxrnn.scan`)
    by registering its params type::

        @jaxrnn.initial_carry.register
        def _(params: MyParams, batch_shape=()):
            return jnp.zeros((*batch_shape, params.w.shape[-1]), params.w.dtype)

    Example:
        >>> import jax, jaxrnn
        >>> p = jaxrnn.lstm_init(jax.random.key(0), 3, 5)
        >>> jaxrnn.initial_carry(p, batch_shape=(2,)).c.shape
        (2, 5)
    """
    del batch_shape
    raise TypeError(
        f"params: no initial carry is known for type {type(params).__name__}; pass carry= "
        "explicitly, or register one with @jaxrnn.initial_carry.register"
    )


def batch_tuple(batch_shape, name: str = "batch_shape") -> tuple[int, ...]:
    try:
        shape = tuple(int(n) for n in batch_shape)
    except TypeError:
        raise TypeError(f"{name}: expected a tuple of ints, got {batch_shape!r}") from None
    if any(n < 0 for n in shape):
        raise ValueError(f"{name}: expected non-negative sizes, got {shape}")
    return shape


def zeros_hidden(params, batch_shape):
    """Zeros of shape ``(*batch_shape, params.hidden_size)`` in the params' dtype."""
    return jnp.zeros((*batch_tuple(batch_shape), params.hidden_size), params.w_h.dtype)
