"""The vanilla (Elman) recurrent cell."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from jaxrnn import _checks, _initializers
from jaxrnn._carry import zeros_hidden
from jaxrnn._cell import Cell, register_cell
from jaxrnn._params import SIZES, RecurrentWeights, bias, pytree_dataclass, static
from jaxrnn._precision import like, matmul
from jaxrnn.rules import fused

_ACTIVATIONS = {"tanh": jnp.tanh, "relu": jax.nn.relu}


@pytree_dataclass
class RNNParams(RecurrentWeights):
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

    def check(self):
        """Checks the fields against each other (at trace time, naming the field)."""
        d, h = self.input_size, self.hidden_size
        _checks.check_params(
            self, {"w_x": 2, "w_h": 2, "b": 1}, lambda: {"w_x": (d, h), "w_h": (h, h), "b": (h,)}
        )

    def __post_init__(self):
        if not isinstance(self.activation, str) or self.activation not in _ACTIVATIONS:
            raise ValueError(
                f"activation: expected one of {sorted(_ACTIVATIONS)}, got {self.activation!r}"
            )


def rnn_init(key, input_size: int, hidden_size: int, *, activation="tanh", dtype=jnp.float32):
    """Initialises a vanilla RNN cell (see ``jaxrnn._initializers`` for the scheme).

    Example:
        >>> import jax, jaxrnn
        >>> p = jaxrnn.rnn_init(jax.random.key(0), 3, 5, activation="relu")
        >>> p.w_x.shape, p.w_h.shape, p.b.shape
        ((3, 5), (5, 5), (5,))
    """
    _initializers.check_sizes(key, input_size, hidden_size)
    dtype = _checks.float_dtype(dtype)
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
    h, _, _ = rnn_cell(params, carry, x, recurrent_mask)
    return h, h


def rnn_cell(params: RNNParams, carry: jax.Array, x: jax.Array, recurrent_mask=None):
    """:func:`rnn_step`'s ``H_t``, also returning ``H_t`` as the output and as residuals.

    The one place the RNN equation is written; the fused gradient builds on it.
    """
    _checks.params_type(params, RNNParams, "rnn_step")
    params.check()
    x = _checks.check_step_args(
        x, {"carry": carry}, params.input_size, params.hidden_size, params.w_h.dtype
    )
    return _recurrent(params, carry, matmul(x, params.w_x), recurrent_mask)


def _recurrent(params: RNNParams, carry: jax.Array, ax: jax.Array, recurrent_mask=None):
    """:func:`rnn_cell` from the step's input projection ``ax = X_t W_xh``: the rest of it."""
    h_in = _checks.apply_recurrent_mask(carry, recurrent_mask)
    h = _ACTIVATIONS[params.activation](ax + matmul(h_in, params.w_h) + bias(params.b, ax))
    h = like(h, carry)
    return h, h, h


# The fused gradient (see jaxrnn.rules.fused) ----------------------------------------------


def _forward(params, h, x, options):
    return rnn_cell(params, h, x, options.get("recurrent_mask"))


def _project_inputs(params, xs, options):
    return matmul(xs, params.w_x)


def _forward_projected(params, h, ax, options):
    return _recurrent(params, h, ax, options.get("recurrent_mask"))


def _backward(params, h_new, h_in, dh, dy, options):
    dh = dh + dy
    if params.activation == "tanh":
        dg = dh * fused.tanh_grad(h_new)
    else:  # relu; the derivative at 0 is 0, as jax.nn.relu's
        dg = jnp.where(h_new > 0, dh, jnp.zeros_like(dh))
    d_h, d_options = fused.masked_input(h_in, matmul(dg, params.w_h.T), options)
    return d_h, dg, d_options


def _param_grads(params, xs, h_ins, residuals, dgs, options):
    del residuals
    dw_x, db, dxs = fused.input_grads(params.w_x, xs, dgs)
    dw_h = fused.contract(fused.masked_inputs(h_ins, options), dgs)
    return dataclasses.replace(params, w_x=dw_x, w_h=dw_h, b=db), dxs


_RULE = fused.FusedGradient(_forward, _backward, _param_grads, _project_inputs, _forward_projected)
RNN = register_cell(Cell("rnn", rnn_init, rnn_step, RNNParams, zeros_hidden, _RULE, **SIZES))
