"""Layer normalisation (Ba, Kiros & Hinton 2016) of gate pre-activations, one gate at a time.

The LSTM and GRU with ``layer_norm=True`` normalise each gate's block of ``h``
units on its own, as Lingvo's ``LayerNormalizedLSTMCellSimple`` (the TensorFlow
and Praxis LSTM with layer norm) and TensorFlow's ``LayerNormBasicLSTMCell``
do; Ba et al.'s equations and Keras' ``LayerNormLSTMCell`` normalise all
``G*h`` units jointly. Per gate, the statistics of one gate (say the forget
gate, pushed positive by its bias) do not shift the others, and a GRU
normalises the same blocks in both reset placements.

For a block ``a`` of ``h`` units: ``LN(a) = (a - mean(a)) / sqrt(var(a) + 1e-5) * scale + bias``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from jaxrnn._params import bias as _to_rank

#: Added to the variance (PyTorch's and Flax's default).
EPSILON = 1e-5


class LayerNormParams(NamedTuple):
    """The gain and bias of a layer normalisation over ``G`` blocks of ``h`` units."""

    scale: jax.Array  # gain, (G*h,); starts at 1
    bias: jax.Array  # (G*h,); starts at 0


def layer_norm_init(size: int, dtype) -> LayerNormParams:
    """Gain 1 and bias 0: the identity on normalised values."""
    return LayerNormParams(jnp.ones((size,), dtype), jnp.zeros((size,), dtype))


def sliced(ln: LayerNormParams, start: int, stop: int) -> LayerNormParams:
    """The gain and bias of units ``start:stop`` (some of the blocks)."""
    return LayerNormParams(ln.scale[start:stop], ln.bias[start:stop])


def _blocks(a, gates):
    return a.reshape(*a.shape[:-1], gates, a.shape[-1] // gates)


def normalize(ln: LayerNormParams | None, a, gates: int):
    """``(LN(a), residuals)``, each of the ``gates`` blocks of ``a (*batch, gates*h)`` on its own.

    With ``ln=None`` this is ``(a, None)``: no normalisation.
    """
    if ln is None:
        return a, None
    blocks = _blocks(a, gates)
    centred = blocks - blocks.mean(-1, keepdims=True)
    rstd = lax.rsqrt((centred * centred).mean(-1, keepdims=True) + EPSILON)
    normed = (centred * rstd).reshape(a.shape)
    return normed * _to_rank(ln.scale, a) + _to_rank(ln.bias, a), (normed, rstd)


def normalize_grad(ln: LayerNormParams | None, residuals, dy, gates: int):
    """The cotangent of ``a`` from that of ``normalize(ln, a, gates)[0]``."""
    if ln is None:
        return dy
    normed, rstd = residuals
    d_normed = _blocks(dy * _to_rank(ln.scale, dy), gates)
    normed = _blocks(normed, gates)
    mean = d_normed.mean(-1, keepdims=True)
    along = (d_normed * normed).mean(-1, keepdims=True)
    return (rstd * (d_normed - mean - normed * along)).reshape(dy.shape)


def param_grads(residuals, dys) -> LayerNormParams:
    """The gradients of the gain and bias, from all steps' residuals and cotangents at once."""
    normed = residuals[0]
    rows = lambda a: a.reshape(-1, a.shape[-1])
    return LayerNormParams(scale=rows(dys * normed).sum(0), bias=rows(dys).sum(0))
