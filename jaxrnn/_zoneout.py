"""Zoneout (Krueger et al. 2017): units that keep their previous value, as a wrapper of a step.

While training, each unit of every carry leaf (``H``, and ``C`` for an LSTM,
with masks of their own as in the paper) keeps its previous value with
probability ``p``, drawn anew at every step and for every sequence::

    H_t = M_t ⊙ H_{t-1} + (1 - M_t) ⊙ H~_t,      M_t ~ Bernoulli(p)

where ``H~_t`` is the step's own new value. In evaluation the mask is replaced
by its expectation, ``H_t = p H_{t-1} + (1 - p) H~_t``: zoneout changes the
computation whenever ``p > 0``: unlike inverted dropout, it has no "off" at
test time. The wrapped step's output is the zoned hidden state
(:attr:`jaxrnn.Cell.hidden`), which for the built-in cells is what their ``y`` is.

The training masks are drawn up front, one ``(T, *batch, units)`` array per
layer and direction in the inputs' dtype, and travel to each step appended to
its input; a step needs no key and no time index, and lengths, resets,
reversal and remat of :func:`jaxrnn.scan` apply to them as to the inputs. The
cost is one array the size of the layer's carries over all steps (as large as
its ``ys``, twice that for an LSTM), about what the plain ``lax.scan`` already
keeps for the gradient. The wrapped step is not the cell's registered step, so
it runs the plain ``lax.scan`` rather than a fused gradient.
"""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp

from jaxrnn import _checks, _sharding


def expected_step(step, rate: float, hidden):
    """``step`` with zoneout in evaluation: every carry leaf ``p * old + (1 - p) * new``.

    ``hidden(carry)`` is the hidden state in a carry (:meth:`jaxrnn.Cell.hidden_state`),
    the wrapped step's output.
    """

    def zoned(params, carry, x):
        new, _ = step(params, carry, x)
        new = jax.tree.map(lambda old, a: (rate * old + (1 - rate) * a).astype(a.dtype), carry, new)
        return new, hidden(new)

    return zoned


def training_step(step, params, rate: float, key, carry, xs, hidden):
    """``(zoned, xs_with_masks)``: the step with sampled zoneout, and its inputs.

    ``zoned(_, carry, x)`` ignores its first argument (``params`` is closed
    over, so that :func:`jaxrnn.scan` checks no feature size against the wider
    inputs) and splits ``x`` into the step's input and one mask per carry leaf.
    Every leaf of ``carry`` must start with the batch axes ``xs.shape[1:-1]``;
    ``hidden`` is as for :func:`expected_step`.
    """
    xs = _checks.as_floating(xs, "xs")
    if xs.ndim < 2:
        raise ValueError(
            f"xs: expected a time-major array of shape (T, *batch, d), got shape {xs.shape}"
        )
    batch = xs.shape[1:-1]
    leaves, tree = jax.tree.flatten(carry)
    sizes = [math.prod(leaf.shape[len(batch) :]) for leaf in leaves]
    keep_old = jax.random.bernoulli(
        key, rate, (xs.shape[0], *batch, sum(sizes)),
        **_sharding.out_sharding(xs, (*_sharding.parts(xs)[:-1], None)),
    )  # fmt: skip
    d = xs.shape[-1]
    offsets = [0, *itertools.accumulate(sizes)]

    def zoned(_, carry, x_and_masks):
        x, masks = x_and_masks[..., :d], x_and_masks[..., d:]
        new, _ = step(params, carry, x)
        new = jax.tree.unflatten(
            tree,
            [
                jnp.where(masks[..., a:b].reshape(old.shape) > 0, old, n)
                for old, n, a, b in zip(
                    jax.tree.leaves(carry),
                    jax.tree.leaves(new),
                    offsets[:-1],
                    offsets[1:],
                    strict=True,
                )
            ],
        )
        return new, hidden(new)

    return zoned, jnp.concatenate([xs, keep_old.astype(xs.dtype)], axis=-1)
