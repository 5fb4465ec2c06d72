"""NNX cells: ``(carry, x) -> (carry, y)`` over one time step."""

from __future__ import annotations

from flax import nnx

from jaxrnn._carry import initial_carry
from jaxrnn._layer import CELLS, cell_options
from jaxrnn.nnx._variables import unwrap, wrap


class _Cell(nnx.Module):
    kind: str

    def __init__(self, in_features, hidden_features, *, params=None, rngs=None, **options):
        init, _ = CELLS[self.kind]
        options = cell_options(self.kind, options, type(self).__name__)
        if params is None:
            if rngs is None:
                raise ValueError("rngs: expected nnx.Rngs to initialise the parameters, got None")
            params = init(rngs.params(), in_features, hidden_features, **options)
        self.params = wrap(params)

    def to_params(self):
        """The cell's parameters as the functional params pytree."""
        return unwrap(self.params)

    @classmethod
    def from_params(cls, params):
        """A cell holding ``params`` (e.g. from :func:`jaxrnn.interop.from_torch`)."""
        return cls(params.input_size, params.hidden_size, params=params)

    def initial_carry(self, batch_shape=()):
        """Zero carry with leading ``batch_shape`` axes."""
        return initial_carry(self.to_params(), batch_shape)

    def __call__(self, carry, x):
        return CELLS[self.kind][1](self.to_params(), carry, x)


class RNNCell(_Cell):
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

    kind = "rnn"


class LSTMCell(_Cell):
    """LSTM cell; equations in :func:`jaxrnn.lstm_step`, carry a :class:`jaxrnn.LSTMState`.

    ``LSTMCell(in_features, hidden_features, *, forget_bias=1.0, dtype=float32,
    params=None, rngs=None)``.
    """

    kind = "lstm"


class GRUCell(_Cell):
    """GRU cell; equations in :func:`jaxrnn.gru_step`.

    ``GRUCell(in_features, hidden_features, *, reset_after=False, dtype=float32,
    params=None, rngs=None)``.
    """

    kind = "gru"
