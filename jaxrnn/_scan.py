"""The scan driver: ``lax.scan`` of a step, plus lengths, resets, reversal and remat."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from jaxrnn import _checks, _precision, _sharding
from jaxrnn._cell import Bound, Cell, bind
from jaxrnn._chunks import scan_in_chunks
from jaxrnn._masking import masked_body, valid_steps, where

Step = Callable[[Any, Any, jax.Array], tuple[Any, Any]]


def scan(
    step: Step | Cell | str,
    params,
    xs: jax.Array,
    *,
    carry=None,
    lengths: jax.Array | None = None,
    resets: jax.Array | None = None,
    reverse: bool = False,
    unroll: int | bool = 1,
    remat: bool = False,
    gradient: str = "auto",
    axis_name=None,
    dtype=None,
    carry_dtype=None,
):
    """Runs ``step`` over the leading (time) axis of ``xs``.

    With no options this is ``lax.scan(functools.partial(step, params), carry, xs)``, for
    the built-in steps and for any user function ``step(params, carry, x) -> (carry, y)``:
    exactly, but for the built-in LSTM, GRU and RNN without a gradient, which project
    the inputs of 8 steps with one matmul and so equal it up to float32 rounding.
    The options handle what real data needs; their meaning is this plain loop::

        carry0 = carry
        order = reversed(range(T)) if reverse else range(T)
        for t in order:
            if lengths is not None and t >= lengths:  # per sequence in the batch
                ys[t] = 0                             # padding: nothing runs, the carry
                continue                              # is left alone, resets included
            if resets is not None and resets[t]:
                carry = carry0                        # a new episode starts at t
            carry, ys[t] = step(params, carry, xs[t])

    So with ``lengths`` the final carry is the state after each sequence's last
    valid step, and with ``reverse=True`` each sequence's valid prefix runs from
    its last valid step back to step 0, outputs staying at their positions.
    Lengths beyond ``T`` act as ``T``; negative lengths act as 0. What the
    padding holds (even NaN) changes neither values nor gradients.

    Args:
        step: ``step(params, carry, x) -> (carry, y)``, e.g. :func:`jaxrnn.lstm_step`;
            or a :class:`jaxrnn.Cell` (registered or not) or a registered name,
            which stand for their step, zero carry and scan rule.
        params: the step's parameters.
        xs: inputs, time-major, shape ``(T, *batch, d)``.
        carry: initial carry, leaves of shape ``(*batch, ...)``; ``None`` means
            :func:`jaxrnn.initial_carry` (zeros).
        lengths: optional integer array (any integer dtype) of shape ``batch``:
            the number of valid (left-aligned) steps of each sequence.
        resets: optional bool array of shape ``(T, *batch)``: where true the carry
            is set back to the initial carry before that step (packed episodes).
        reverse: run from ``t = T - 1`` down to 0.
        unroll: passed to :func:`jax.lax.scan`.
        remat: recompute activations in the backward pass. Time is cut into
            about ``sqrt(T)`` chunks and only the carries between chunks are kept,
            so training memory beyond ``xs`` and ``ys`` grows as ``sqrt(T)``
            rather than ``T``, for about one extra forward pass. Values and
            gradients are those without remat up to rounding: about 1e-7
            relative in float32, but up to about 1% in bfloat16, where the
            recomputed activations round differently.
        gradient: how the sequence runs and is differentiated.

            * ``"auto"`` (default): the scan rule of the step's cell
              (:class:`jaxrnn.Cell`), if it has one and the step is that
              cell's own: the cell or its name, the registered step function
              itself, or ``functools.partial(step, **keywords)`` with
              keywords the rule takes (``recurrent_mask``). For the built-in
              cells that is a hand-written backward pass through time or a
              parallel scan. Anything else runs as ``lax.scan`` of itself,
              with the same values but none of the rule's speed: a lambda
              around the step, ``jax.jit(step)`` (jit the call to ``scan``
              instead), a positional ``partial``.
            * ``"rule"``: the same, but a step that would run without its
              cell's rule is an error that says why.
            * ``"autodiff"``: always ``lax.scan`` of ``step``, differentiated
              by JAX, which supports every transformation, forward mode
              (``jax.jvp``, ``jax.jacfwd``, ``jax.hessian``) included.
        axis_name: shard the time axis (minGRU, minLSTM, mLSTM: cells whose scan rule
            supports it, such as a :class:`jaxrnn.LinearRecurrence`). Inside
            :func:`jax.shard_map` with the time axis of ``xs`` split in order
            over this mesh axis (or tuple of axes), as ``P(axis_name)`` splits
            it: ``xs``, ``resets`` and the returned ``ys`` are this device's
            slice of consecutive steps;
            ``lengths`` counts steps of the whole sequence; ``carry`` is the
            state before the whole sequence and the returned carry the state
            after it, the same on every device (``P()``). Values and gradients
            are those of the unsharded scan, up to rounding. See "Long
            sequences across devices" below.
        dtype: the compute dtype (mixed precision, Flax's ``dtype``): the
            params' floating leaves and ``xs`` are cast to it, so every matmul
            reads ``dtype`` operands; the matmuls accumulate in at least float32,
            the gate math and the state update run in float32, and ``ys`` are
            returned in ``dtype``. Gradients arrive in the params' own dtype.
            ``None`` (the default): no cast, the params' dtype throughout.
        carry_dtype: the dtype of the carry, initial and final (a given carry is
            cast to it); by default float32 with a ``dtype`` narrower than that
            (RecurrentGemma keeps its state in float32 too), else unchanged.

    Returns:
        ``(final_carry, ys)`` with ``ys`` of shape ``(T, *batch, h)``.

    minGRU and minLSTM register a :class:`jaxrnn.LinearRecurrence`, which solves
    their recurrence ``H_t = A_t ⊙ H_{t-1} + B_t`` for the whole sequence with a
    blocked associative scan (O(log T) depth), lengths and resets inside the
    operator. The other built-in cells' rule (:class:`jaxrnn.FusedGradient`) has a backward loop
    that carries only the carry's cotangent, and computes the weight gradients
    as single matmuls over all steps, which is faster than differentiating each
    step. Values and gradients are those of the plain loop. Being a
    ``jax.custom_vjp``, it has no forward mode: use ``gradient="autodiff"``
    for that.

    **Long sequences across devices.** A linear recurrence needs no step's
    output to start the next device's slice: each device folds its slice into
    one map ``h -> A h + B`` from a zero state (``A`` the product of its
    ``A_t``), the maps of all devices are gathered and composed, and each device
    solves its slice from its true incoming state (the carry correction with
    which RecurrentGemma shards its linear recurrence over time). Per device that is the
    time and memory of a ``T / n``-step scan, plus ``2n`` state-sized arrays
    of communication::

        mesh = jax.make_mesh((4,), ("time",))
        xs = jax.device_put(xs, NamedSharding(mesh, P("time")))  # (T, *batch, d)

        @jax.jit
        @functools.partial(jax.shard_map, mesh=mesh,
                           in_specs=(P(), P("time")), out_specs=(P(), P("time")))
        def run(params, xs):  # xs: (T / 4, *batch, d) on each device
            return jaxrnn.scan(jaxrnn.mingru_step, params, xs, axis_name="time")

    Example:
        >>> import jax, jax.numpy as jnp, jaxrnn
        >>> p = jaxrnn.gru_init(jax.random.key(0), 3, 5)
        >>> xs = jnp.ones((6, 2, 3))  # (T, B, d)
        >>> carry, ys = jaxrnn.scan(jaxrnn.gru_step, p, xs, lengths=jnp.array([6, 2]))
        >>> ys.shape, bool((ys[2:, 1] == 0).all())
        ((6, 2, 5), True)
    """
    return scan_bound(
        bind(step, params), params, xs, carry=carry, lengths=lengths, resets=resets,
        reverse=reverse, unroll=unroll, remat=remat, gradient=gradient, axis_name=axis_name,
        dtype=dtype, carry_dtype=carry_dtype,
    )  # fmt: skip


def scan_bound(
    bound: Bound,
    params,
    xs,
    *,
    carry=None,
    lengths=None,
    resets=None,
    reverse=False,
    unroll=1,
    remat=False,
    gradient="auto",
    axis_name=None,
    dtype=None,
    carry_dtype=None,
):
    """:func:`scan` of a step already resolved by :func:`jaxrnn._cell.bind` (as stacks
    resolve it once and add per-layer step options)."""
    xs = _checks.as_floating(xs, "xs")
    dtype, carry_dtype = _precision.policy(dtype, carry_dtype)
    if dtype is not None:
        params, xs = _precision.cast_floating(params, dtype), xs.astype(dtype)
    if xs.ndim < 2:
        raise ValueError(
            f"xs: expected a time-major array of shape (T, *batch, d), got shape {xs.shape}"
        )
    reverse = _checks.boolean(reverse, "reverse")
    remat = _checks.boolean(remat, "remat")
    if gradient not in GRADIENTS:
        raise ValueError(f"gradient: expected one of {', '.join(GRADIENTS)}, got {gradient!r}")
    if not isinstance(unroll, int) or (not isinstance(unroll, bool) and unroll < 1):
        raise ValueError(f"unroll: expected a positive int or a bool, got {unroll!r}")
    rule = _rule(bound, gradient)
    offset, total = 0, None  # this device's first step; the whole sequence's length
    if axis_name is not None:
        offset, total = _time_shard(bound, rule, axis_name, gradient, remat, xs)
    else:  # an Explicit mesh's time-sharded xs, scanned whole
        xs, resets = _sharding.unsplit_time(xs), _sharding.unsplit_time(resets)
    length, batch = xs.shape[0], tuple(xs.shape[1:-1])
    input_size = bound.cell.size_of_input(params)
    if input_size is not None:
        _checks.check_features(xs, input_size, "xs")
    if carry is None:
        carry = bound.cell.initial_carry(params, batch)
    if carry_dtype is not None:
        carry = _precision.cast_floating(carry, carry_dtype)
    # Under an Explicit mesh the carry takes the sharding of the batch it runs over.
    carry = _sharding.with_batch(carry, xs, len(batch))

    valid = None
    if lengths is not None:
        valid = valid_steps(lengths, length, batch, xs.shape, offset=offset, total=total)
        _checks.check_batch_leading(carry, batch, "carry", "lengths")
        # Padding never reaches the step, so NaN there cannot reach a gradient.
        xs = where(valid, xs, jnp.zeros_like(xs))
    if resets is not None:
        resets = jnp.asarray(resets)
        if resets.dtype != jnp.bool_:
            raise TypeError(f"resets: expected a bool array, got dtype {resets.dtype}")
        _checks.check_shape(
            resets, (length, *batch), "resets", f"the (T, *batch) axes of xs {xs.shape}"
        )
        _checks.check_batch_leading(carry, batch, "carry", "resets")
        if valid is not None:
            resets = resets & valid  # a padded step does nothing, a reset included

    carry0 = carry
    inputs = (xs, valid, resets)
    step = bound.step
    # The step's own trace-time checks, with its messages (a rule would otherwise
    # report problems in its own terms), and the shape of what it returns.
    _check_step_output(step, params, carry, xs)
    if rule is not None:

        def loop(carry, inputs):
            x, keep, reset = inputs
            return rule(
                params, carry, carry0, x, keep, reset, reverse=reverse, unroll=unroll,
                options=bound.options, axis_name=axis_name,
            )  # fmt: skip

    else:
        body = masked_body(lambda c, x: (*step(params, c, x), None), carry0)

        def loop(carry, inputs):
            final, (ys, _) = lax.scan(body, carry, inputs, reverse=reverse, unroll=unroll)
            return final, ys

    try:
        if remat and length > 1:
            final, ys = _chunked_remat_scan(loop, carry, inputs, length, reverse)
        else:
            final, ys = loop(carry, inputs)
    except TypeError as error:
        if "forward-mode autodiff" not in str(error):
            raise
        raise TypeError(
            f"gradient: the {bound.cell.name!r} cell's scan rule ({type(rule).__name__}) "
            "defines a reverse-mode gradient only; for jax.jvp, jax.jacfwd or jax.hessian "
            'pass gradient="autodiff"'
        ) from None
    return final, ys if dtype is None else _precision.cast_floating(ys, dtype)


#: The values of :func:`scan`'s ``gradient`` switch.
GRADIENTS = ("auto", "rule", "autodiff")


def _rule(bound: Bound, gradient: str):
    """The scan rule that runs ``bound``'s step, or ``None`` for ``lax.scan`` of it."""
    if gradient == "autodiff":
        return None
    if gradient == "rule" and bound.rule is None:
        raise ValueError(f"gradient: 'rule' needs the step's cell's scan rule, but {bound.no_rule}")
    return bound.rule


def _time_shard(bound: Bound, rule, axis_name, gradient, remat, xs):
    """Checks :func:`scan`'s ``axis_name``; ``(offset, total)``: this device's first
    step and the whole sequence's length (both traced inside ``shard_map``)."""
    if rule is None or not rule.time_sharding:
        if gradient == "autodiff":
            what = "gradient='autodiff'"
        elif rule is None:
            what = f"a step without one ({bound.no_rule})"
        else:
            what = f"the {bound.cell.name!r} cell, whose {type(rule).__name__} does not"
        raise ValueError(
            "axis_name: sharding the time axis needs a cell whose scan rule supports it "
            f"(ScanRule.time_sharding: mingru, minlstm), got {what}"
        )
    if remat:
        raise ValueError("remat: a time-sharded scan keeps no activations to rematerialise")
    try:
        index, devices = lax.axis_index(axis_name), lax.axis_size(axis_name)
    except NameError as e:
        raise ValueError(
            f"axis_name: {axis_name!r} is not a mesh axis of the enclosing jax.shard_map ({e})"
        ) from None
    # Inside shard_map (with its replication check on, which the device index then
    # shows), xs records the mesh axes it varies over: xs split over other axes
    # only, or over none, would be read as slices it is not.
    names = set(axis_name) if isinstance(axis_name, tuple) else {axis_name}
    if names <= _varying(index) and not names <= _varying(xs):
        over = ", ".join(sorted(map(repr, _varying(xs)))) or "no mesh axis (replicated, P())"
        raise ValueError(
            f"xs: expected its time axis split over the mesh axis {axis_name!r} "
            f"(in_specs P({axis_name!r})), got an xs that varies over {over}"
        )
    length = xs.shape[0]
    return index * length, devices * length


def _check_step_output(step, params, carry, xs) -> None:
    """``step(params, carry, x)`` must return ``(carry, y)``, the carry as it came in.

    Traced abstractly on a step of ``xs`` (its type, sharding included)."""

    def first(xs):  # an empty sequence has no step to take the type of: its shape will do
        return xs[0] if xs.shape[0] else jnp.zeros(xs.shape[1:], xs.dtype)

    out = jax.eval_shape(lambda carry, xs: step(params, carry, first(xs)), carry, xs)
    if not (isinstance(out, tuple) and len(out) == 2):
        if isinstance(out, tuple):
            got = f"a tuple of {len(out)}"
        elif hasattr(out, "shape"):
            got = f"one array of shape {tuple(out.shape)}"
        else:
            got = type(out).__name__
        raise TypeError(f"step: expected it to return (carry, y), got {got}")
    if jax.tree.structure(out[0]) != jax.tree.structure(carry):
        raise TypeError(
            "step: expected it to return a carry of the structure it was given, "
            f"{jax.tree.structure(carry)}, got {jax.tree.structure(out[0])}"
        )


def _varying(x) -> frozenset:
    """The mesh axes ``x`` varies over inside ``shard_map`` (empty elsewhere)."""
    return getattr(getattr(jax.typeof(x), "manual_axis_type", None), "varying", frozenset())


def _chunked_remat_scan(loop, carry, inputs, length, reverse):
    """``loop(carry, inputs)`` (a scan over time) with sqrt(T) checkpointing (Chen et al. 2016).

    The scan runs over chunks of ``k = ceil(sqrt(T))`` steps and keeps only each
    chunk's incoming carry; a chunk's activations are rebuilt in the backward
    pass. A last partial chunk of ``T mod k`` steps runs on its own.
    """
    k = math.isqrt(length - 1) + 1
    run = jax.checkpoint(loop, prevent_cse=False)
    return scan_in_chunks(run, carry, inputs, k, reverse=reverse)
