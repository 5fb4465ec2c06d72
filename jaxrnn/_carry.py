"""Carries: the zero carry of a cell, dispatched on the type of its params, and the LSTM's state."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxrnn._checks import batch_tuple


class LSTMState(NamedTuple):
    """The carry of the LSTM and the ConvLSTM: ``h (*batch, p)`` and ``c (*batch, h)``.

    ``p = h`` but for a projected LSTM (``proj_size``).
    """

    h: jax.Array  # hidden state H_t, also the output
    c: jax.Array  # memory cell C_t


def check_lstm_state(carry, cell: str, shape: str) -> None:
    """``carry`` must be an :class:`LSTMState`; the error names the cell and its ``shape``."""
    if isinstance(carry, LSTMState):
        return
    got = type(carry).__name__
    if hasattr(carry, "shape"):
        got = f"an array of shape {tuple(carry.shape)}"
    raise TypeError(
        f"carry: expected a jaxrnn.LSTMState(h, c), got {got}; {cell} carries two {shape} "
        "arrays, see jaxrnn.initial_carry"
    )


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


def zeros_hidden(params, batch_shape=()):
    """Zeros of shape ``(*batch_shape, params.hidden_size)`` in the params' dtype."""
    return jnp.zeros((*batch_tuple(batch_shape), params.hidden_size), params.w_x.dtype)
