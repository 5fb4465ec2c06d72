"""Readouts: a linear recurrence whose output is read from its state, not the state itself.

The state of a state-space layer (Mamba's S6, the LRU) is larger than its output
(``(d, N)`` per step for S6, ``N`` complex numbers for the LRU), and the output
is a function of the state and the input, ``y_t = readout(X_t, S_t)``. Such a
cell carries :class:`ReadoutState`: the state, and the last output, which is
what a stack's next layer, zoneout and :func:`jaxrnn.hidden_grad_norms` see
(:attr:`jaxrnn.Cell.hidden` is ``"y"``). The output does not feed the
recurrence; it is carried so that a padded step keeps it, as it keeps the state.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from jaxrnn._masking import where


class ReadoutState(NamedTuple):
    """The carry of a cell whose output is read from its state (S6, the LRU)."""

    y: jax.Array  # the last output y_t (*batch, h)
    s: jax.Array  # the state S_t (*batch, *state)


def last_output(ys, y0, keep, *, reverse, solve):
    """The output of the last step that ran (in the recurrence's order), else ``y0``.

    ``ys (T, *batch, h)``; ``keep`` as the rule gets it. ``solve(a, b, h0) -> (hs, final)``
    solves ``H_t = a_t H_{t-1} + b_t`` (sharded over time where the rule is): the
    carried output is the recurrence ``(0, y_t)`` on steps that run, ``(1, 0)`` on
    the others.
    """
    if ys.shape[0] == 0:
        return y0
    if keep is None:
        keep = jnp.ones(ys.shape[:-1], bool)
    a = where(keep, jnp.zeros_like(ys), jnp.ones_like(ys))
    b = where(keep, ys, jnp.zeros_like(ys))
    return solve(a, b, y0.astype(ys.dtype))[1]


def working_state(s, dtype, complex_state: bool):
    """A carried state in the dtype the recurrence runs in: ``s.astype(dtype)``, or, for
    a complex state carried as real and imaginary halves ``(..., 2N)``, the complex ``(..., N)``."""
    if not complex_state:
        return s.astype(dtype)
    real, imag = jnp.split(s.astype(jnp.finfo(dtype).dtype), 2, axis=-1)
    return lax.complex(real, imag)


def carried_state(s, dtype, complex_state: bool):
    """The inverse of :func:`working_state`: the state as the carry holds it, in ``dtype``."""
    if not complex_state:
        return s.astype(dtype)
    return jnp.concatenate([jnp.real(s), jnp.imag(s)], axis=-1).astype(dtype)
