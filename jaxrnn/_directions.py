"""Both directions of a bidirectional layer as one loop, with batched matmuls.

A bidirectional layer runs the same cell forward over ``xs`` and backward over
it. Run backward over ``xs``, the backward direction is the same loop as the
forward one run over ``xs`` reversed in time: with ``lengths``, reversed within
each sequence's valid prefix (step ``t < n`` read from ``n - 1 - t``, padding
left in place). Both directions then run forward in time, on the same steps, so
they can run as one loop: their params stacked on a new leading axis, and the
direction an extra batch axis ``(2, *batch)`` of the carry and of ``xs``
``(T, 2, *batch, d)``. Each step's matmuls are then one batched matmul
``(2, B, h) @ (2, h, G h)`` over both directions, and the loop runs ``T``
steps rather than ``2 T``, in the forward pass and in the backward pass of the
cell's :class:`jaxrnn.FusedGradient`, whose per-step functions run under
:func:`jax.vmap` over the direction axis.

The reversal within lengths maps step ``t`` to ``n - 1 - t`` for ``t < n`` and
to ``t`` otherwise: it is its own inverse, so the same gather maps the backward
direction's outputs back to their positions, and is its own transpose in the
gradient. Values and gradients are those of the two loops.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
from jax import lax

from jaxrnn._cell import Bound, _keywords
from jaxrnn._masking import valid_steps
from jaxrnn.rules.fused import FusedGradient


def applies(bound: Bound, layer, carries) -> bool:
    """Whether a layer's two directions, with these bound steps, can run as one loop.

    ``bound`` is ``(forward, backward)`` bound steps (step options included),
    ``layer`` their params and ``carries`` their initial carries. Both must run
    the same :class:`jaxrnn.FusedGradient` (a plain ``lax.scan`` of a step, a
    zoned step or another rule keep the two loops), on params and carries of
    the same structure, shapes and dtypes (they are stacked).
    """
    if len(layer) != 2 or any(not isinstance(b.rule, FusedGradient) for b in bound):
        return False
    if bound[0].rule is not bound[1].rule or bound[0].cell is not bound[1].cell:
        return False
    if set(bound[0].options) != set(bound[1].options):
        return False
    return all(_same_types(a, b) for a, b in (layer, carries, (bound[0].options, bound[1].options)))


def _same_types(a, b) -> bool:
    if jax.tree.structure(a) != jax.tree.structure(b):
        return False
    return all(
        jnp.shape(x) == jnp.shape(y) and jnp.result_type(x) == jnp.result_type(y)
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


def stack(a, b, axis: int = 0):
    """Two pytrees of the same structure, each leaf stacked along ``axis``."""
    return jax.tree.map(lambda x, y: jnp.stack([x, y], axis=axis), a, b)


def unstack(tree, axis: int = 0):
    """The inverse of :func:`stack`: ``(first, second)``."""
    take = lambda j: jax.tree.map(lambda x: lax.index_in_dim(x, j, axis, keepdims=False), tree)
    return take(0), take(1)


# The reversal of time within each sequence's length ---------------------------------


def reversal(lengths, xs):
    """The gather index that reverses ``xs (T, *batch, ...)`` in time within each length.

    ``None`` without lengths (:func:`reverse` then flips the time axis);
    otherwise an int32 ``(T, *batch)`` array, ``n - 1 - t`` where ``t < n`` and ``t``
    past the length (``n`` clipped to ``[0, T]``).
    """
    if lengths is None:
        return None
    length, batch = xs.shape[0], xs.shape[1:-1]
    valid = valid_steps(lengths, length, batch, xs.shape)
    n = valid.sum(0, dtype=jnp.int32)
    t = jnp.arange(length, dtype=jnp.int32).reshape((length,) + (1,) * len(batch))
    return jnp.where(valid, n[None] - 1 - t, t)


def reverse(xs, index):
    """``xs (T, *batch, ...)`` reversed in time, within the lengths :func:`reversal` gave."""
    if index is None:
        return jnp.flip(xs, 0)
    return _gather_time(xs, index)


@jax.custom_vjp
def _gather_time(xs, index):
    index = index.reshape(index.shape + (1,) * (xs.ndim - index.ndim))
    return jnp.take_along_axis(xs, index, axis=0, mode="promise_in_bounds")


def _gather_time_fwd(xs, index):
    return _gather_time(xs, index), index


def _gather_time_bwd(index, ct):
    # The permutation is an involution, so its transpose is itself: a gather, not a scatter.
    return _gather_time(ct, index), None


_gather_time.defvjp(_gather_time_fwd, _gather_time_bwd)


# The bound step and rule over a leading direction axis ------------------------------

#: How the per-step functions run over the directions: "map" (each direction's own
#: matmuls, params a pair) or "vmap" (batched matmuls, params stacked).
HOW = "map"


def stacked_params(layer):
    return stack(*layer) if HOW == "vmap" else tuple(layer)


def stacked_bound(bound: Bound, options) -> Bound:
    """``bound`` run on carries and inputs with a leading direction axis.

    ``options`` are both directions' step options stacked on that axis. The
    direction is the leading batch axis of the carry and each step's input, so
    :func:`jaxrnn.scan` runs it as a batch ``(2, *batch)``; the cell's own input
    width was checked on each direction's params already.
    """
    func = _keywords(bound.step)[0]
    step = _directions_step(func, HOW)
    cell = _unchecked_input(bound.cell)
    if options:
        step = functools.partial(step, **options)
    return Bound(step, cell, bound.step_options, _directions_rule(bound.rule, HOW), options, "")


@functools.cache
def _unchecked_input(cell):
    return dataclasses.replace(cell, input_size=None)


def _over(f, in_axes, out_axes, how):
    """``f`` over the direction axis: ``in_axes``/``out_axes`` as :func:`jax.vmap`'s,
    ``None`` for the params (stacked on axis 0 under ``vmap``, a pair under ``map``)."""
    if how == "vmap":
        vin = tuple(0 if a is None else a for a in in_axes)
        vout = (
            tuple(0 if a is None else a for a in out_axes)
            if isinstance(out_axes, tuple)
            else (0 if out_axes is None else out_axes)
        )
        return jax.vmap(f, in_axes=vin, out_axes=vout)

    def mapped(*args):
        outs = []
        for j in range(2):
            one = [
                a[j] if ax is None else _index(a, j, ax)
                for a, ax in zip(args, in_axes, strict=True)
            ]
            outs.append(f(*one))
        if not isinstance(out_axes, tuple):
            return _join(outs[0], outs[1], out_axes)
        return tuple(_join(a, b, ax) for a, b, ax in zip(*outs, out_axes, strict=True))

    return mapped


def _index(tree, j, axis):
    return jax.tree.map(lambda x: lax.index_in_dim(x, j, axis, keepdims=False), tree)


def _join(a, b, axis):
    return (a, b) if axis is None else stack(a, b, axis)


@functools.cache
def _directions_step(func, how):
    def one(p, c, x, o):
        return func(p, c, x, **o)

    mapped = _over(one, (None, 0, 0, 0), (0, 0), how)

    def step(params, carry, x, **options):
        return mapped(params, carry, x, options)

    return step


@functools.cache
def _directions_rule(rule: FusedGradient, how) -> FusedGradient:
    """``rule`` with each of its functions run over the direction axis.

    Per step, every argument has the direction first; arrays stacked over time
    (``param_grads``'s ``xs``, ``carries_in``, and a chunk's inputs to
    ``project``) have it second, after time. The residuals and the gates'
    cotangents are pairs, one per direction (``map``), so that the loops stack
    each direction's on its own and the weight gradients read them as they lie.
    """
    res, over_time = (0, 1) if how == "vmap" else (None, None)
    project, projected = None, None
    if rule.project is not None:
        project = _over(rule.project, (None, 1, 0), 1, how)
        projected = _over(rule.forward_projected, (None, 0, 0, 0), (0, 0, res), how)
    return dataclasses.replace(
        rule,
        forward=_over(rule.forward, (None, 0, 0, 0), (0, 0, res), how),
        backward=_over(rule.backward, (None, res, 0, 0, 0, 0), (0, res, 0), how),
        param_grads=_over(rule.param_grads, (None, 1, 1, over_time, over_time, 0), (None, 1), how),
        project=project,
        forward_projected=projected,
    )
