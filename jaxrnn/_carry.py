"""The zero carry of a cell, dispatched on the type of its params."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import jax.numpy as jnp

from jaxrnn._checks import batch_tuple


@functools.singledispatch
def initial_carry(params, batch_shape: Sequence[int] = ()):
    """Zero carry for ``params``, with leading ``batch_shape`` axes.

    Built-in cells give an array of shape ``(*batch_shape, h)`` (RNN, GRU) or a
    :class:`LSTMState` of two such arrays, in the params' dtype.

    A custom cell takes part (and so gets ``carry=None`` in :func:`jaxrnn.scan`)
    through the ``initial_carry`` of its :class:`jaxrnn.Cell`, which
    :func:`jaxrnn.register_cell` registers for its params type.

    Example:
        >>> import jax, jaxrnn
        >>> p = jaxrnn.lstm_init(jax.random.key(0), 3, 5)
        >>> jaxrnn.initial_carry(p, batch_shape=(2,)).c.shape
        (2, 5)
    """
    del batch_shape
    raise TypeError(
        f"params: no initial carry is known for type {type(params).__name__}; pass carry= "
        "explicitly, or register the cell with jaxrnn.register_cell"
    )


def zeros_hidden(params, batch_shape):
    """Zeros of shape ``(*batch_shape, params.hidden_size)`` in the params' dtype."""
    return jnp.zeros((*batch_tuple(batch_shape), params.hidden_size), params.w_h.dtype)


def hidden_state(carry):
    """The hidden state ``H`` inside a carry: the carry itself, or its ``h`` field."""
    if hasattr(carry, "shape"):
        return carry
    if hasattr(carry, "h"):
        return carry.h
    raise TypeError(
        f"carry: expected the hidden state or a carry with an 'h' field, got {type(carry).__name__}"
    )


def with_hidden_state(carry, h):
    """``carry`` with its hidden state (see :func:`hidden_state`) replaced by ``h``."""
    if hasattr(carry, "shape"):
        return h
    if hasattr(carry, "_replace"):
        return carry._replace(h=h)
    return dataclasses.replace(carry, h=h)
