"""A faster gradient for the built-in cells: a hand-written backward pass through time.

``jax.grad`` of ``lax.scan`` differentiates each step on its own, so the
backward loop accumulates ``dW += h_t^T dG_t`` (and the same for ``w_x`` and the
biases) at every step: a small matmul plus a read and write of every weight
gradient per step. Here the backward loop carries only the cotangent of the
carry, emits the cotangent of each step's gate pre-activations ``dG_t``, and the
weight and input gradients are then single large matmuls over all ``T * B``
rows, after the loop. The forward pass saves the gate activations it has already
computed, so the backward loop evaluates no sigmoid or tanh.

The primal (no gradient) is ``lax.scan`` of the built-in step itself, so
forward values are the step's exactly. The forward rule calls the function that
the step itself wraps (``lstm_cell``, ``gru_cell``), which also returns the
activations, so the equations are written once; each cell's ``backward`` is
their derivative, and ``tests/test_fused.py`` holds the gradients to those of
``lax.scan`` of the step for every cell and every option of :func:`jaxrnn.scan`.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from jaxrnn._gru import GRUParams, gru_cell, gru_step
from jaxrnn._lstm import LSTMParams, LSTMState, lstm_cell, lstm_step
from jaxrnn._masking import masked_body, select, where
from jaxrnn._rnn import RNNParams, rnn_step


class Cell(NamedTuple):
    """The pieces of one built-in cell that the fused gradient needs.

    forward(params, carry, x) -> (carry, y, residuals): the step, also returning
        what the backward pass needs from it.
    backward(params, residuals, carry_in, d_carry, dy) -> (d_carry_in, dg): the
        cotangent of the incoming carry and of the gate pre-activations fed by
        ``x @ w_x`` (shape ``(*batch, G*h)``).
    param_grads(params, xs, carries_in, residuals, dgs) -> (d_params, d_xs): the
        same over all steps at once (arrays stacked on a leading time axis).
    """

    step: Any
    forward: Any
    backward: Any
    param_grads: Any


def _sigmoid_grad(s):
    return s * (1 - s)


def _flat(a):
    """``(T, *batch, n) -> (T * prod(batch), n)``: all steps and sequences as rows."""
    return a.reshape(-1, a.shape[-1])


def _input_grads(params, xs, dgs):
    """Gradients of ``xs @ w_x + b`` given ``dgs``, as one matmul each: (dw_x, db, dxs)."""
    dw_x = _flat(xs).T @ _flat(dgs)
    return dw_x, _flat(dgs).sum(0), dgs @ params.w_x.T


# Vanilla RNN ---------------------------------------------------------------------------


def _rnn_forward(params, h, x):
    new, _ = rnn_step(params, h, x)
    return new, new, new


def _rnn_backward(params, h_new, h_in, dh, dy):
    del h_in
    dh = dh + dy
    if params.activation == "tanh":
        dg = dh * (1 - h_new * h_new)
    else:  # relu; the derivative at 0 is 0, as jax.nn.relu's
        dg = jnp.where(h_new > 0, dh, jnp.zeros_like(dh))
    return dg @ params.w_h.T, dg


def _rnn_param_grads(params, xs, h_ins, residuals, dgs):
    del residuals
    dw_x, db, dxs = _input_grads(params, xs, dgs)
    dw_h = _flat(h_ins).T @ _flat(dgs)
    return dataclasses.replace(params, w_x=dw_x, w_h=dw_h, b=db), dxs


# LSTM ----------------------------------------------------------------------------------


def _lstm_backward(params, residuals, carry_in, d_carry, dy):
    i, f, g, o, tanh_c = residuals
    dh = d_carry.h + dy
    dc = d_carry.c + dh * o * (1 - tanh_c * tanh_c)
    dg = jnp.concatenate(
        [
            dc * g * _sigmoid_grad(i),
            dc * carry_in.c * _sigmoid_grad(f),
            dc * i * (1 - g * g),
            dh * tanh_c * _sigmoid_grad(o),
        ],
        axis=-1,
    )
    return LSTMState(h=dg @ params.w_h.T, c=dc * f), dg


def _lstm_param_grads(params, xs, carries_in, residuals, dgs):
    del residuals
    dw_x, db, dxs = _input_grads(params, xs, dgs)
    dw_h = _flat(carries_in.h).T @ _flat(dgs)
    return dataclasses.replace(params, w_x=dw_x, w_h=dw_h, b=db), dxs


# GRU -----------------------------------------------------------------------------------


def _gru_forward(params, h, x):
    new, activations = gru_cell(params, h, x)
    return new, new, activations


def _gru_backward(params, residuals, h_in, dh, dy):
    n = params.hidden_size
    r, z, candidate = residuals[:3]
    dh = dh + dy
    dz = dh * (h_in - candidate) * _sigmoid_grad(z)
    dn = dh * (1 - z) * (1 - candidate * candidate)
    if params.reset_after:
        (gh_n,) = residuals[3:]
        dr = dn * gh_n * _sigmoid_grad(r)
        dgh = jnp.concatenate([dr, dz, dn * r], axis=-1)
        dh_in = dh * z + dgh @ params.w_h.T
    else:
        d_rh = dn @ params.w_h[:, 2 * n :].T
        dr = d_rh * h_in * _sigmoid_grad(r)
        dh_in = dh * z + d_rh * r + jnp.concatenate([dr, dz], axis=-1) @ params.w_h[:, : 2 * n].T
    return dh_in, jnp.concatenate([dr, dz, dn], axis=-1)


def _gru_param_grads(params, xs, h_ins, residuals, dgs):
    n = params.hidden_size
    r = residuals[0]
    dw_x, db_x, dxs = _input_grads(params, xs, dgs)
    if params.reset_after:
        dgh = jnp.concatenate([dgs[..., : 2 * n], dgs[..., 2 * n :] * r], axis=-1)
        dw_h = _flat(h_ins).T @ _flat(dgh)
        db_h = _flat(dgh).sum(0)
    else:
        dw_h = jnp.concatenate(
            [
                _flat(h_ins).T @ _flat(dgs[..., : 2 * n]),
                _flat(r * h_ins).T @ _flat(dgs[..., 2 * n :]),
            ],
            axis=-1,
        )
        db_h = db_x
    return dataclasses.replace(params, w_x=dw_x, w_h=dw_h, b_x=db_x, b_h=db_h), dxs


_CELLS = {
    LSTMParams: Cell(lstm_step, lstm_cell, _lstm_backward, _lstm_param_grads),
    GRUParams: Cell(gru_step, _gru_forward, _gru_backward, _gru_param_grads),
    RNNParams: Cell(rnn_step, _rnn_forward, _rnn_backward, _rnn_param_grads),
}


def lookup(step, params):
    """The fused cell for ``step(params, ...)``, or ``None`` to use plain ``lax.scan``."""
    cell = _CELLS.get(type(params))
    if cell is None or cell.step is not step:
        return None
    matrices = (params.w_x, params.w_h)
    vectors = [getattr(params, name) for name in ("b", "b_x", "b_h") if hasattr(params, name)]
    if any(jnp.ndim(w) != 2 for w in matrices) or any(jnp.ndim(v) != 1 for v in vectors):
        return None  # not the shapes the step documents; let lax.scan say what it makes of them
    return cell


# The scan with masks, and its gradient --------------------------------------------------


def _zeros(tree):
    return jax.tree.map(jnp.zeros_like, tree)


def _add(a, b):
    return jax.tree.map(jnp.add, a, b)


def scan(cell, params, carry, carry0, xs, keep, reset, reverse, unroll):
    """``jaxrnn.scan``'s loop for a built-in cell, with the fused gradient.

    ``keep`` and ``reset`` are ``(T, *batch)`` bool masks or ``None``; ``carry0`` is
    what a reset restores. Returns ``(carry, ys)``.
    """
    return _scan(cell, reverse, unroll, params, carry, carry0, xs, keep, reset)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def _scan(cell, reverse, unroll, params, carry, carry0, xs, keep, reset):
    body = masked_body(lambda c, x: (*cell.step(params, c, x), None), carry0)
    final, (ys, _) = lax.scan(body, carry, (xs, keep, reset), reverse=reverse, unroll=unroll)
    return final, ys


def _scan_fwd(cell, reverse, unroll, params, carry, carry0, xs, keep, reset):
    def forward(carry_in, x):
        new, y, residuals = cell.forward(params, carry_in, x)
        return new, y, (carry_in, residuals)

    body = masked_body(forward, carry0)
    final, (ys, (carries_in, residuals)) = lax.scan(
        body, carry, (xs, keep, reset), reverse=reverse, unroll=unroll
    )
    return (final, ys), (params, carry0, xs, keep, reset, carries_in, residuals)


def _scan_bwd(cell, reverse, unroll, saved, cotangents):
    params, carry0, xs, keep, reset, carries_in, residuals = saved
    d_final, dys = cotangents

    def body(acc, inputs):
        d_carry, d_carry0 = acc
        dy, carry_in, res, keep, reset = inputs
        if keep is not None:
            # new = keep ? cell's carry : carry_in, y = keep ? cell's y : 0.
            d_skip = select(keep, _zeros(d_carry), d_carry)
            d_carry = select(keep, d_carry, _zeros(d_carry))
            dy = where(keep, dy, jnp.zeros_like(dy))
        d_carry, dg = cell.backward(params, res, carry_in, d_carry, dy)
        if keep is not None:
            d_carry = _add(d_carry, d_skip)
        if reset is not None:
            d_carry0 = _add(d_carry0, select(reset, d_carry, _zeros(d_carry)))
            d_carry = select(reset, _zeros(d_carry), d_carry)
        return (d_carry, d_carry0), dg

    (d_carry, d_carry0), dgs = lax.scan(
        body,
        (d_final, _zeros(carry0)),
        (dys, carries_in, residuals, keep, reset),
        reverse=not reverse,
        unroll=unroll,
    )
    d_params, dxs = cell.param_grads(params, xs, carries_in, residuals, dgs)
    return d_params, d_carry, d_carry0, dxs, None, None


_scan.defvjp(_scan_fwd, _scan_bwd)
