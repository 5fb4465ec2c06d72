"""NNX cells: ``(carry, x) -> (carry, y)`` over one time step, for any registered cell."""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from jaxrnn._batch_major import cell_carry, cell_step, precision
from jaxrnn._cell import cell_of, get_cell
from jaxrnn.nnx._variables import unwrap, wrap


class RecurrentCell(nnx.Module):
    """One step of any :class:`jaxrnn.Cell`, holding its params as ``nnx.Param``.

    ``RecurrentCell(cell, in_features, hidden_features, *, dtype=None,
    param_dtype=float32, params=None, rngs=None, **cell_options)``: ``cell`` is a
    registered name (``"lstm"``) or a :class:`jaxrnn.Cell`; ``cell_options`` go to
    its ``init``. The call is the cell's step on the held params. ``dtype`` and
    ``param_dtype`` have Flax's meaning: the compute dtype (see
    :func:`jaxrnn.with_precision`; ``None``: the params') and the params' own.

    Example:
        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> import jaxrnn
        >>> cell = jaxrnn.nnx.RecurrentCell("gru", 3, 5, reset_after=True, rngs=nnx.Rngs(0))
        >>> carry, y = cell(cell.initial_carry((2,)), jnp.ones((2, 3)))
        >>> y.shape
        (2, 5)
    """

    def __init__(
        self,
        cell,
        in_features,
        hidden_features,
        *,
        dtype=None,
        param_dtype=jnp.float32,
        params=None,
        rngs=None,
        **options,
    ):
        self.cell = get_cell(cell)
        self.dtype, init_options = precision(self.cell, dtype, param_dtype)
        options = self.cell.with_options(options, type(self).__name__, ("dtype",))
        if params is None:
            if rngs is None:
                raise ValueError("rngs: expected nnx.Rngs to initialise the parameters, got None")
            options = options | init_options
            params = self.cell.init(rngs.params(), in_features, hidden_features, **options)
        self.params = wrap(params)

    @classmethod
    def from_params(cls, params):
        """A cell module holding ``params`` (e.g. from :func:`jaxrnn.interop.from_torch`)."""
        return RecurrentCell(cell_of(params), None, None, params=params)

    def to_params(self):
        """The cell's parameters as the functional params pytree."""
        return unwrap(self.params)

    def initial_carry(self, batch_shape=()):
        """Zero carry with leading ``batch_shape`` axes (float32 under a narrower ``dtype``)."""
        return cell_carry(self.cell, self.to_params(), batch_shape, self.dtype)

    def __call__(self, carry, x):
        return cell_step(self.cell, self.dtype)(self.to_params(), carry, x)


class _NamedCell(RecurrentCell):
    cell_name: str

    def __init__(self, in_features, hidden_features, **options):
        super().__init__(self.cell_name, in_features, hidden_features, **options)

    @classmethod
    def from_params(cls, params):
        """A cell holding ``params`` (e.g. from :func:`jaxrnn.interop.from_torch`)."""
        return cls(None, None, params=params)


class RNNCell(_NamedCell):
    """Vanilla RNN cell; equations in :func:`jaxrnn.rnn_step`.

    ``RNNCell(in_features, hidden_features, *, activation="tanh", dtype=float32,
    params=None, rngs=None)``.

    Example:
        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> import jaxrnn
        >>> cell = jaxrnn.nnx.RNNCell(3, 5, rngs=nnx.Rngs(0))
        >>> carry, y = cell(cell.initial_carry((2,)), jnp.ones((2, 3)))
        >>> y.shape
        (2, 5)
    """

    cell_name = "rnn"


class LSTMCell(_NamedCell):
    """LSTM cell; equations in :func:`jaxrnn.lstm_step`, carry a :class:`jaxrnn.LSTMState`.

    ``LSTMCell(in_features, hidden_features, *, forget_bias=1.0, dtype=float32,
    proj_size=0, peephole=False, layer_norm=False, coupled=False,
    cell_clip=None, params=None, rngs=None)``: the options are those of
    :func:`jaxrnn.lstm_init`.
    """

    cell_name = "lstm"


class GRUCell(_NamedCell):
    """GRU cell; equations in :func:`jaxrnn.gru_step`.

    ``GRUCell(in_features, hidden_features, *, reset_after=False, layer_norm=False,
    dtype=float32, params=None, rngs=None)``: the options are those of
    :func:`jaxrnn.gru_init`.
    """

    cell_name = "gru"
