"""The long short-term memory cell (Hochreiter & Schmidhuber 1997), no peepholes."""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxrnn import _checks, _fused, _initializers
from jaxrnn._carry import zeros_hidden
from jaxrnn._cell import Cell, register_cell
from jaxrnn._pytree import FusedGates, bias, pytree_dataclass


class LSTMState(NamedTuple):
    """The LSTM carry. Both fields have shape ``(*batch, h)``."""

    h: jax.Array  # hidden state H_t, also the output
    c: jax.Array  # memory cell C_t


@pytree_dataclass
class LSTMParams(FusedGates):
    """Parameters of an LSTM cell, gates fused along the last axis in the order i, f, g, o.

    The order is PyTorch's, so ``w_x`` is ``weight_ih.T`` and ``w_h`` is
    ``weight_hh.T``; ``g`` is the candidate cell :math:`\\tilde C`.

    Attributes:
        w_x: input weights, shape ``(d, 4h)``.
        w_h: recurrent weights, shape ``(h, 4h)``.
        b: bias, shape ``(4h,)``. PyTorch's two biases ``b_ih + b_hh`` sum into it.
    """

    w_x: jax.Array
    w_h: jax.Array
    b: jax.Array

    def check(self):
        """Checks the fields against each other (at trace time, naming the field)."""
        d, h = self.input_size, self.hidden_size
        _checks.check_params(
            self,
            {"w_x": 2, "w_h": 2, "b": 1},
            lambda: {"w_x": (d, 4 * h), "w_h": (h, 4 * h), "b": (4 * h,)},
        )


def lstm_init(key, input_size: int, hidden_size: int, *, forget_bias=1.0, dtype=jnp.float32):
    """Initialises an LSTM cell.

    The forget-gate bias starts at ``forget_bias`` (1.0, following Gers et al.
    2000 and Jozefowicz et al. 2015) so the cell remembers by default; PyTorch
    starts it at 0 (uniform), Flax and Keras at 1. All other biases are zero.

    Example:
        >>> import jax, jaxrnn
        >>> p = jaxrnn.lstm_init(jax.random.key(0), 3, 5)
        >>> p.w_x.shape, p.w_h.shape, p.b.shape
        ((3, 20), (5, 20), (20,))
        >>> float(p.b[5:10].mean())  # the f block
        1.0
    """
    _initializers.check_sizes(input_size, hidden_size)
    dtype = _checks.float_dtype(dtype)
    _checks.finite_number(forget_bias, "forget_bias")
    kx, kh = jax.random.split(key)
    b = jnp.zeros((4, hidden_size), dtype).at[1].set(forget_bias).reshape(-1)
    return LSTMParams(
        w_x=_initializers.input_weights(kx, input_size, hidden_size, 4, dtype),
        w_h=_initializers.recurrent_weights(kh, hidden_size, 4, dtype),
        b=b,
    )


def lstm_step(params: LSTMParams, carry: LSTMState, x: jax.Array, *, recurrent_mask=None):
    r"""One step of the LSTM.

    .. math::
        I_t &= \sigma(X_t W_{xi} + H_{t-1} W_{hi} + b_i) \\
        F_t &= \sigma(X_t W_{xf} + H_{t-1} W_{hf} + b_f) \\
        \tilde C_t &= \tanh(X_t W_{xc} + H_{t-1} W_{hc} + b_c) \\
        O_t &= \sigma(X_t W_{xo} + H_{t-1} W_{ho} + b_o) \\
        C_t &= F_t \odot C_{t-1} + I_t \odot \tilde C_t \\
        H_t &= O_t \odot \tanh(C_t)

    Args:
        params: an :class:`LSTMParams`.
        carry: an :class:`LSTMState` ``(h, c)``, each ``(*batch, h)``.
        x: ``X_t``, shape ``(*batch, d)``.
        recurrent_mask: optional ``(*batch, h)`` multiplier on ``H_{t-1}`` where it
            enters the recurrent matmul (variational recurrent dropout).

    Returns:
        ``(LSTMState(H_t, C_t), H_t)``.

    Example:
        >>> import functools, jax, jax.numpy as jnp, jaxrnn
        >>> p = jaxrnn.lstm_init(jax.random.key(0), 3, 5)
        >>> xs = jnp.ones((7, 2, 3))  # (T, B, d)
        >>> carry = jaxrnn.initial_carry(p, batch_shape=(2,))
        >>> carry, ys = jax.lax.scan(functools.partial(jaxrnn.lstm_step, p), carry, xs)
        >>> ys.shape
        (7, 2, 5)
    """
    state, h, _ = lstm_cell(params, carry, x, recurrent_mask)
    return state, h


def lstm_cell(params: LSTMParams, carry: LSTMState, x: jax.Array, recurrent_mask=None):
    """:func:`lstm_step`, also returning the activations ``(i, f, g, o, tanh(C_t))``.

    The one place the LSTM equations are written; the fused gradient of
    :func:`jaxrnn.scan` keeps these activations for its backward pass.
    """
    params.check()
    if not isinstance(carry, LSTMState):
        got = type(carry).__name__
        if hasattr(carry, "shape"):
            got = f"an array of shape {tuple(carry.shape)}"
        raise TypeError(
            f"carry: expected a jaxrnn.LSTMState(h, c), got {got}; an LSTM carries two "
            "(*batch, h) arrays, see jaxrnn.initial_carry"
        )
    x = _checks.check_step_args(
        x,
        {"carry.h": carry.h, "carry.c": carry.c},
        params.input_size,
        params.hidden_size,
        params.w_h.dtype,
    )
    h_in = _checks.masked(carry.h, recurrent_mask)
    gates = x @ params.w_x + h_in @ params.w_h + bias(params.b, x)
    i, f, g, o = jnp.split(gates, 4, axis=-1)
    i, f, g, o = jax.nn.sigmoid(i), jax.nn.sigmoid(f), jnp.tanh(g), jax.nn.sigmoid(o)
    c = f * carry.c + i * g
    tanh_c = jnp.tanh(c)
    h = o * tanh_c
    return LSTMState(h=h, c=c), h, (i, f, g, o, tanh_c)


# The fused gradient (see jaxrnn._fused) ----------------------------------------------------


def _forward(params, carry, x, options):
    return lstm_cell(params, carry, x, options.get("recurrent_mask"))


def _backward(params, residuals, carry_in, d_carry, dy, options):
    i, f, g, o, tanh_c = residuals
    dh = d_carry.h + dy
    dc = d_carry.c + dh * o * _fused.tanh_grad(tanh_c)
    dg = jnp.concatenate(
        [
            dc * g * _fused.sigmoid_grad(i),
            dc * carry_in.c * _fused.sigmoid_grad(f),
            dc * i * _fused.tanh_grad(g),
            dh * tanh_c * _fused.sigmoid_grad(o),
        ],
        axis=-1,
    )
    d_h, d_options = _fused.masked_input(carry_in.h, dg @ params.w_h.T, options)
    return LSTMState(h=d_h, c=dc * f), dg, d_options


def _param_grads(params, xs, carries_in, residuals, dgs, options):
    del residuals
    dw_x, db, dxs = _fused.input_grads(params.w_x, xs, dgs)
    dw_h = _fused.flat(_fused.masked_inputs(carries_in.h, options)).T @ _fused.flat(dgs)
    return dataclasses.replace(params, w_x=dw_x, w_h=dw_h, b=db), dxs


def _initial_carry(params, batch_shape=()):
    zeros = zeros_hidden(params, batch_shape)
    return LSTMState(h=zeros, c=zeros)


LSTM = register_cell(
    Cell(
        name="lstm",
        init=lstm_init,
        step=lstm_step,
        params_type=LSTMParams,
        initial_carry=_initial_carry,
        scan_rule=_fused.FusedGradient(_forward, _backward, _param_grads),
    )
)
