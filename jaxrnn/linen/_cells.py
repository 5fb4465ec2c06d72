"""Linen cells: ``(carry, x) -> (carry, y)`` over one time step."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from jaxrnn._carry import initial_carry
from jaxrnn._layer import CELLS


class _Cell(nn.Module):
    hidden_features: int
    dtype: Any = jnp.float32
    kind = ""

    def _options(self) -> dict:
        return {}

    def _init(self, key, in_features):
        return CELLS[self.kind][0](
            key, in_features, self.hidden_features, dtype=self.dtype, **self._options()
        )

    @nn.compact
    def __call__(self, carry, x):
        params = self.param("cell", self._init, jnp.shape(x)[-1])
        return CELLS[self.kind][1](params, carry, x)

    def initial_carry(self, batch_shape=()):
        """Zero carry with leading ``batch_shape`` axes (needs no parameters)."""
        shapes = jax.eval_shape(lambda key: self._init(key, 1), jax.random.key(0))
        return initial_carry(shapes, batch_shape)

    @staticmethod
    def to_params(variables):
        """The functional params inside ``variables`` (as returned by ``init``)."""
        return variables["params"]["cell"]

    @staticmethod
    def variables_from_params(params):
        """``variables`` for ``apply`` that hold ``params`` (e.g. converted from PyTorch)."""
        return {"params": {"cell": params}}


class RNNCell(_Cell):
    """Vanilla RNN cell; equations in :func:`jaxrnn.rnn_step`.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> import jaxrnn
        >>> cell = jaxrnn.linen.RNNCell(5)
        >>> carry, x = cell.initial_carry((2,)), jnp.ones((2, 3))
        >>> variables = cell.init(jax.random.key(0), carry, x)
        >>> carry, y = cell.apply(variables, carry, x)
        >>> y.shape
        (2, 5)
    """

    activation: str = "tanh"
    kind = "rnn"

    def _options(self):
        return {"activation": self.activation}


class LSTMCell(_Cell):
    """LSTM cell; equations in :func:`jaxrnn.lstm_step`, carry a :class:`jaxrnn.LSTMState`."""

    forget_bias: float = 1.0
    kind = "lstm"

    def _options(self):
        return {"forget_bias": self.forget_bias}


class GRUCell(_Cell):
    """GRU cell; equations in :func:`jaxrnn.gru_step`."""

    reset_after: bool = False
    kind = "gru"

    def _options(self):
        return {"reset_after": self.reset_after}
