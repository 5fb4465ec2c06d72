"""A faster gradient for the built-in cells: a hand-written backward pass through time.

``jax.grad`` of ``lax.scan`` differentiates each step on its own, so the
backward loop accumulates ``dW += h_t^T dG_t`` (and the same for ``w_x`` and the
biases) at every step: a small matmul plus a read and write of every weight
gradient per step. Here the backward loop carries only the cotangent of the
carry, emits the cotangent of each step's gate pre-activations ``dG_t``, and the
weight and input gradients are then single large matmuls over all ``T * B``
rows, after the loop. The forward pass saves the gate activations it has already
computed, so the backward loop evaluates no sigmoid or tanh.

This module is the generic machinery and knows no cell. A cell supplies three
functions beside its equations (see ``_lstm.py``) and registers them as its
:class:`FusedGradient`. Its ``forward`` is the function its step wraps, so the
equations are written once and forward values are the step's exactly; its
``backward`` and ``param_grads`` are their derivative. ``tests/test_fused.py``
holds the gradients to those of ``lax.scan`` of the step for every cell and
every option of :func:`jaxrnn.scan`.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from jaxrnn._masking import masked_body, select, where


@dataclasses.dataclass(frozen=True)
class FusedGradient:
    """A cell's scan rule with a hand-written backward pass through time.

    Each function gets ``options``, the dict of array keyword arguments the step
    was given (e.g. ``{"recurrent_mask": m}``), possibly empty.

    Attributes:
        forward: ``forward(params, carry, x, options) -> (carry, y, residuals)``:
            the step, also returning what the backward pass needs from it.
        backward: ``backward(params, residuals, carry_in, d_carry, dy, options)
            -> (d_carry_in, dg, d_options)``: the cotangents of the incoming
            carry, of the gate pre-activations fed by ``x @ w_x`` (shape
            ``(*batch, G*h)``) and of this step's use of ``options``. ``dg``
            may be any pytree of such arrays that ``param_grads`` reads (a
            variant's extra weights may need more than the gates' cotangent).
        param_grads: ``param_grads(params, xs, carries_in, residuals, dgs, options)
            -> (d_params, d_xs)``: the same over all steps at once (arrays
            stacked on a leading time axis), as large matmuls.
    """

    forward: Callable[..., Any]
    backward: Callable[..., Any]
    param_grads: Callable[..., Any]

    def __call__(self, params, carry, carry0, xs, keep, reset, *, reverse, unroll, options):
        """``(carry, ys)`` of the masked scan (see :mod:`jaxrnn._masking`), with this gradient."""
        return _scan(self, reverse, unroll, params, carry, carry0, xs, keep, reset, options)


def sigmoid_grad(s):
    """``σ'`` from ``s = σ(a)``."""
    return s * (1 - s)


def tanh_grad(t):
    """``tanh'`` from ``t = tanh(a)``."""
    return 1 - t * t


def contract(a, b):
    """``sum over t, batch of a[t, ..., :, None] * b[t, ..., None, :]``: one matmul, ``(m, n)``.

    All steps and sequences are the rows of one product. It contracts the
    leading axes as they are rather than reshaping them into one, so a batch
    axis sharded over devices is summed where it lies and reduced once.
    """
    rows = tuple(range(a.ndim - 1))
    return jnp.tensordot(a, b, axes=(rows, rows))


def sum_rows(a):
    """``a (T, *batch, n)`` summed over all steps and sequences: ``(n,)``."""
    return a.sum(tuple(range(a.ndim - 1)))


def input_grads(w_x, xs, dgs):
    """Gradients of ``xs @ w_x + b`` given ``dgs``, as one matmul each: (dw_x, db, dxs)."""
    return contract(xs, dgs), sum_rows(dgs), dgs @ w_x.T


def masked_inputs(hs, options):
    """``hs (T, *batch, h)`` times the step's ``recurrent_mask (*batch, h)``, if it has one."""
    mask = options.get("recurrent_mask")
    return hs if mask is None else hs * mask[None]


def masked_input(h, d_h_in, options):
    """Backward of ``h_in = h * recurrent_mask``: ``(d_h, d_options)`` from ``d_h_in``."""
    mask = options.get("recurrent_mask")
    if mask is None:
        return d_h_in, {}
    return d_h_in * mask, {"recurrent_mask": d_h_in * h}


# The scan with masks, and its gradient --------------------------------------------------


def _zeros(tree):
    return jax.tree.map(jnp.zeros_like, tree)


def _add(a, b):
    return jax.tree.map(jnp.add, a, b)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def _scan(rule, reverse, unroll, params, carry, carry0, xs, keep, reset, options):
    # Without a gradient the residuals are dead code, which XLA removes.
    body = masked_body(lambda c, x: (*rule.forward(params, c, x, options)[:2], None), carry0)
    final, (ys, _) = lax.scan(body, carry, (xs, keep, reset), reverse=reverse, unroll=unroll)
    return final, ys


def _scan_fwd(rule, reverse, unroll, params, carry, carry0, xs, keep, reset, options):
    def forward(carry_in, x):
        new, y, residuals = rule.forward(params, carry_in, x, options)
        return new, y, (carry_in, residuals)

    body = masked_body(forward, carry0)
    final, (ys, (carries_in, residuals)) = lax.scan(
        body, carry, (xs, keep, reset), reverse=reverse, unroll=unroll
    )
    return (final, ys), (params, carry0, xs, keep, reset, options, carries_in, residuals)


def _scan_bwd(rule, reverse, unroll, saved, cotangents):
    params, carry0, xs, keep, reset, options, carries_in, residuals = saved
    d_final, dys = cotangents

    def body(acc, inputs):
        d_carry, d_carry0, d_options = acc
        dy, carry_in, res, keep, reset = inputs
        if keep is not None:
            # new = keep ? cell's carry : carry_in, y = keep ? cell's y : 0.
            d_skip = select(keep, _zeros(d_carry), d_carry)
            d_carry = select(keep, d_carry, _zeros(d_carry))
            dy = where(keep, dy, jnp.zeros_like(dy))
        d_carry, dg, d_opts = rule.backward(params, res, carry_in, d_carry, dy, options)
        d_options = _add(d_options, d_opts)
        if keep is not None:
            d_carry = _add(d_carry, d_skip)
        if reset is not None:
            d_carry0 = _add(d_carry0, select(reset, d_carry, _zeros(d_carry)))
            d_carry = select(reset, _zeros(d_carry), d_carry)
        return (d_carry, d_carry0, d_options), dg

    (d_carry, d_carry0, d_options), dgs = lax.scan(
        body,
        (d_final, _zeros(carry0), _zeros(options)),
        (dys, carries_in, residuals, keep, reset),
        reverse=not reverse,
        unroll=unroll,
    )
    d_params, dxs = rule.param_grads(params, xs, carries_in, residuals, dgs, options)
    return d_params, d_carry, d_carry0, dxs, None, None, d_options


_scan.defvjp(_scan_fwd, _scan_bwd)
