"""Activations that more than one cell uses."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def positive(a):
    """``g(a)`` of minGRU and minLSTM (Feng et al. 2024): ``a + 1/2`` if ``a >= 0``, else ``σ(a)``.

    Positive and continuous, so a candidate state built with it is positive
    (which allows the paper's log-space scan; see :mod:`jaxrnn.rules.linear`).
    """
    return jnp.where(a >= 0, a + 0.5, jax.nn.sigmoid(a))
