"""Linen cells: ``(carry, x) -> (carry, y)`` over one time step, for any registered cell."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn
from flax.core import FrozenDict

from jaxrnn._batch_major import cell_carry, cell_step, precision
from jaxrnn._cell import get_cell


def cell_options(module) -> dict:
    """The init options of a Linen module: its ``cell_options``, then its option fields."""
    cell = get_cell(module.cell)
    _, init_options = precision(cell, module.dtype, module.param_dtype)
    names = [name for name in cell.options if name != "dtype" and hasattr(module, name)]
    fields = {name: getattr(module, name) for name in names}
    if "dtype" in module.cell_options:
        raise TypeError(
            f"cell_options: {type(module).__name__}'s dtype is its compute dtype (Flax's "
            "meaning); give the params' dtype as param_dtype"
        )
    return (
        cell.with_options(dict(module.cell_options) | fields, type(module).__name__, ("dtype",))
        | init_options
    )


def with_option_fields(base, name: str, cell_name: str, doc: str):
    """A subclass of ``base`` for one cell, with a field per init option and its default.

    The defaults are read from the cell's ``init``, so they are written once.
    """
    # ``dtype`` is the module's compute dtype (Flax's meaning); the init's is ``param_dtype``.
    options = {k: v for k, v in get_cell(cell_name).options.items() if k != "dtype"}
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
        dtype: the compute dtype, Flax's meaning (see :func:`jaxrnn.with_precision`);
            ``None``: the params' own.
        param_dtype: the dtype of the params it initialises.

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
    dtype: Any = None
    param_dtype: Any = jnp.float32

    def _init(self, key, in_features):
        return get_cell(self.cell).init(
            key, in_features, self.hidden_features, **cell_options(self)
        )

    @nn.compact
    def __call__(self, carry, x):
        params = self.param("cell", self._init, jnp.shape(x)[-1])
        return cell_step(get_cell(self.cell), self.dtype)(params, carry, x)

    def initial_carry(self, batch_shape=()):
        """Zero carry with leading ``batch_shape`` axes (needs no parameters)."""
        shapes = jax.eval_shape(lambda key: self._init(key, 1), jax.random.key(0))
        return cell_carry(get_cell(self.cell), shapes, batch_shape, self.dtype)

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
