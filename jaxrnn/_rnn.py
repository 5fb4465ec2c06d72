"""The vanilla (Elman) recurrent cell."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxrnn import _checks, _initializers
from jaxrnn._carry import initial_carry, zeros_hidden
from jaxrnn._pytree import FusedGates, bias, pytree_dataclass, static

_ACTIVATIONS = {"tanh": jnp.tanh, "relu": jax.nn.relu}


@pytree_dataclass
class RNNParams(FusedGates):
    """Parameters of a vanilla RNN cell.

    Attributes:
        w_x: input weights, shape ``(d, h)``.
        w_h: recurrent weights, shape ``(h, h)``.
        b: bias, shape ``(h,)``. PyTorch's two biases ``b_ih + b_hh`` sum into it.
        activation: ``"tanh"`` (default) or ``"relu"``; static, not a leaf.
    """

    w_x: jax.Array
    w_h: jax.Array
    b: jax.Array
    activation: str = static("tanh")

    def __post_init__(self):
        if self.activation not in _ACTIVATIONS:
            raise ValueError(
                f"activation: expected one of {sorted(_ACTIVATIONS)}, got {self.activation!r}"
            )


def rnn_init(key, input_size: int, hidden_size: int, *, activation="tanh", dtype=jnp.float32):
    """Initialises a vanilla RNN cell (see :mod:`jaxrnn._initializers` for the scheme).

    Example:
        >>> import jax, jaxrnn
        >>> p = jaxrnn.rnn_init(jax.random.key(0), 3, 5, activation="relu")
        >>> p.w_x.shape, p.w_h.shape, p.b.shape
        ((3, 5), (5, 5), (5,))
    """
    _initializers.check_sizes(input_size, hidden_size)
    kx, kh = jax.random.split(key)
    return RNNParams(
        w_x=_initializers.input_weights(kx, input_size, hidden_size, 1, dtype),
        w_h=_initializers.recurrent_weights(kh, hidden_size, 1, dtype),
        b=jnp.zeros((hidden_size,), dtype),
        activation=activation,
    )


def rnn_step(params: RNNParams, carry: jax.Array, x: jax.Array, *, recurrent_mask=None):
    r"""One step of the vanilla RNN.

    .. math::
        H_t = \phi(X_t W_{xh} + H_{t-1} W_{hh} + b), \qquad \phi \in \{\tanh, \mathrm{relu}\}

    Args:
        params: an :class:`RNNParams`.
        carry: ``H_{t-1}``, shape ``(*batch, h)``.
        x: ``X_t``, shape ``(*batch, d)``, any number of batch axes (including none).
        recurrent_mask: optional ``(*batch, h)`` multiplier on ``H_{t-1}`` where it
            enters the recurrent matmul (variational recurrent dropout).

    Returns:
        ``(H_t, H_t)``: the new carry and the output.

    Example:
        >>> import jax, jax.numpy as jnp, jaxrnn
        >>> p = jaxrnn.rnn_init(jax.random.key(0), 3, 5)
        >>> h, y = jaxrnn.rnn_step(p, jaxrnn.initial_carry(p), jnp.ones(3))
        >>> y.shape
        (5,)
    """
    x = _checks.check_step_args(
        x, {"carry": carry}, params.input_size, params.hidden_size, params.w_h.dtype
    )
    h_in = _checks.masked(carry, recurrent_mask)
    h = _ACTIVATIONS[params.activation](x @ params.w_x + h_in @ params.w_h + bias(params.b, x))
    return h, h


@initial_carry.register
def _(params: RNNParams, batch_shape=()):
    return zeros_hidden(params, batch_shape)
