"""Linen cells: ``(carry, x) -> (carry, y)`` over one time step, for any registered cell."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn
from flax.core import FrozenDict

from jaxrnn._cell import get_cell


def cell_options(module) -> dict:
    """The init options of a Linen module: its ``cell_options``, then its option fields."""
    cell = get_cell(module.cell)
    fields = {name: getattr(module, name) for name in cell.options if hasattr(module, name)}
    return cell.with_options(dict(module.cell_options) | fields, type(module).__name__)


def with_option_fields(base, name: str, cell_name: str, doc: str):
    """A subclass of ``base`` for one cell, with a field per init option and its default.

    The defaults are read from the cell's ``init``, so they are written once.
    """
    options = get_cell(cell_name).options
    namespace = {
        "__annotations__": {"cell": Any} | {option: Any for option in options},
        "cell": cell_name,
        "__doc__": doc,
        "__module__": base.__module__,
        "__qualname__": name,
        **options,
    }
    return type(name, (base,), namespace)


class RecurrentCell(nn.Module):
    """One step of any :class:`jaxrnn.Cell`; its params live under ``params/cell``.

    Attributes:
        hidden_features: ``h``.
        cell: a registered name (``"lstm"``) or a :class:`jaxrnn.Cell`.
        cell_options: options for the cell's ``init``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> import jaxrnn
        >>> cell = jaxrnn.linen.RecurrentCell(5, cell="gru", cell_options={"reset_after": True})
        >>> carry, x = cell.initial_carry((2,)), jnp.ones((2, 3))
        >>> variables = cell.init(jax.random.key(0), carry, x)
        >>> carry, y = cell.apply(variables, carry, x)
        >>> y.shape
        (2, 5)
    """

    hidden_features: int
    cell: Any = "lstm"
    cell_options: Mapping[str, Any] = FrozenDict()

    def _init(self, key, in_features):
        return get_cell(self.cell).init(
            key, in_features, self.hidden_features, **cell_options(self)
        )

    @nn.compact
    def __call__(self, carry, x):
        params = self.param("cell", self._init, jnp.shape(x)[-1])
        return get_cell(self.cell).step(params, carry, x)

    def initial_carry(self, batch_shape=()):
        """Zero carry with leading ``batch_shape`` axes (needs no parameters)."""
        shapes = jax.eval_shape(lambda key: self._init(key, 1), jax.random.key(0))
        return get_cell(self.cell).initial_carry(shapes, batch_shape)

    @staticmethod
    def to_params(variables):
        """The functional params inside ``variables`` (as returned by ``init``)."""
        return variables["params"]["cell"]

    @staticmethod
    def variables_from_params(params):
        """``variables`` for ``apply`` that hold ``params`` (e.g. converted from PyTorch)."""
        return {"params": {"cell": params}}


RNNCell = with_option_fields(
    RecurrentCell,
    "RNNCell",
    "rnn",
    """Vanilla RNN cell; equations in :func:`jaxrnn.rnn_step`.

    Fields: ``hidden_features`` and the options of :func:`jaxrnn.rnn_init`.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> import jaxrnn
        >>> cell = jaxrnn.linen.RNNCell(5)
        >>> carry, x = cell.initial_carry((2,)), jnp.ones((2, 3))
        >>> variables = cell.init(jax.random.key(0), carry, x)
        >>> carry, y = cell.apply(variables, carry, x)
        >>> y.shape
        (2, 5)
    """,
)
LSTMCell = with_option_fields(
    RecurrentCell,
    "LSTMCell",
    "lstm",
    """LSTM cell; equations in :func:`jaxrnn.lstm_step`, carry a :class:`jaxrnn.LSTMState`.

    Fields: ``hidden_features`` and the options of :func:`jaxrnn.lstm_init`.""",
)
GRUCell = with_option_fields(
    RecurrentCell,
    "GRUCell",
    "gru",
    """GRU cell; equations in :func:`jaxrnn.gru_step`.

    Fields: ``hidden_features`` and the options of :func:`jaxrnn.gru_init`.""",
)
