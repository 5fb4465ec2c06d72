"""Linear recurrences ``H_t = A_t ⊙ H_{t-1} + B_t`` over a whole sequence, in parallel.

When a cell's gates read only the input, as in minGRU and minLSTM (Feng et al.
2024), every ``A_t`` and ``B_t`` is known before the loop: one matmul over all
steps gives them. What is left is a first-order linear recurrence, and the
affine maps ``h -> A_t h + B_t`` compose associatively::

    (A_1, B_1) then (A_2, B_2)  =  (A_2 A_1, A_2 B_1 + B_2)

so :func:`jax.lax.associative_scan` computes every ``H_t`` in ``O(log T)``
depth instead of ``T`` sequential steps (Blelloch 1990; Martin & Cundy 2018).

**Linear space, not log space.** Both cells keep ``0 < A_t < 1`` and (with a
zero carry) ``B_t > 0``, so Feng et al. scan ``log A`` and ``log B`` with
log-sum-exp. Here the pairs are scanned as they are: each combine is a multiply
and a fused multiply-add rather than an ``exp`` and a ``log1p``; products of
``A`` that underflow to 0 are the exact contribution of a state that far back
in float32; sums of positive terms lose no precision, and a carry of either
sign (which log space cannot hold) costs nothing. Measured
(``benchmarks/RESULTS_parallel.md``; T = 16384, h = 128, minGRU's coefficients,
against the loop in float64): the blocked linear scan is within 1.8e-7
relative, the log-space pair scan within 4.1e-7 at 8.6x the time (forward and
gradient), and Heinsen's cumulative-sum form of the log-space scan loses 2.5e-3
(its two running sums grow to ~1e4 and cancel).

**Blocks.** On a CPU every level of an associative scan is another pass over
memory, while the sequential loop makes one. :func:`linear_scan` therefore
scans blocks of ``block`` steps one step at a time, all blocks at once (one
vectorised step per position in the block), and combines the blocks' totals
with :func:`jax.lax.associative_scan`: depth ``2 * block + O(log(T / block))``,
still ``O(log T)`` for a fixed block. ``block=1`` is the plain associative scan
of all ``T`` pairs, which trains 1.6-1.9x slower on CPU; blocks of 16 to 128
steps measure alike.

**Gradient.** The cotangent of the sequence is itself a linear recurrence run
the other way, ``G_t = dH_t + A_{t+1} G_{t+1}``, with ``dA_t = G_t H_{t-1}`` and
``dB_t = G_t`` (a ``jax.custom_vjp``). It is solved for ``q_t = A_t G_t``, whose
recurrence ``q_t = A_t q_{t+1} + A_t dH_t`` has the same coefficients: one more
blocked scan instead of the transpose of every step of the first. Complex
coefficients (the LRU) take the same formulas: JAX's transposes conjugate nothing.

This module knows no cell: a cell supplies ``coefficients(params, xs) -> (A, B)``
and registers :class:`LinearRecurrence` as its scan rule.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import ClassVar

import jax
import jax.numpy as jnp
from jax import lax

from jaxrnn import _sharding
from jaxrnn._masking import where
from jaxrnn._params import bias
from jaxrnn.rules.base import ScanRule
from jaxrnn.rules.readout import ReadoutState, carried_state, last_output, working_state
from jaxrnn.rules.segments import SegmentState, segment_flags

#: The block length :func:`linear_scan` uses by default (see the module docstring).
BLOCK = 16


@dataclasses.dataclass(frozen=True)
class LinearRecurrence(ScanRule):
    """The scan rule of a cell whose step is ``H_t = A_t ⊙ H_{t-1} + B_t`` with ``y_t = H_t``.

    The carry is the array ``H (*batch, h)``. :func:`jaxrnn.scan` calls the rule
    with the whole sequence; the rule computes every step's ``(A_t, B_t)`` at once,
    folds lengths and resets into them, and solves the recurrence with
    :func:`linear_scan`. Padded steps become ``(A, B) = (1, 0)``, which pass the
    carry through (their outputs are then set to zero); a reset at ``t`` becomes
    ``(0, B_t + A_t ⊙ H_0)``, the step applied to the initial carry ``H_0``, so
    both stay inside the associative operator. Gradients are JAX's through the
    coefficients and :func:`linear_scan`'s own through the recurrence.

    Attributes:
        coefficients: ``coefficients(params, xs) -> (A, B)`` for ``xs (T, *batch, d)``,
            each ``(T, *batch, h)``, in the dtype to scan in (at least float32:
            bfloat16 params accumulate in float32, and the outputs are cast back
            to the carry's dtype). The same function must define the cell's step.
        block: the block length passed to :func:`linear_scan`.
        segments: the carry is a :class:`jaxrnn.rules.SegmentState` ``(h, started)``
            and a segment's first step differs from the others (the RG-LRU):
            ``coefficients(params, xs, started)`` then takes each step's flag
            ``started (T, *batch)`` (see ``jaxrnn.rules.segments``).
        readout: ``None``: the output is the state, ``y_t = H_t``. Otherwise
            ``readout(params, xs, hs) -> ys``, the outputs of all steps from their
            states ``hs (T, *batch, *state)``, and the carry is a
            :class:`jaxrnn.rules.ReadoutState` ``(y, s)`` (S6, the LRU; see
            ``jaxrnn.rules.readout``). The state may have any trailing axes.
        complex_state: with a readout: the coefficients are complex, the carry holds
            the state's real and imaginary parts as halves of its last axis (the LRU).

    Example:
        >>> import jax, jax.numpy as jnp, jaxrnn
        >>> p = jaxrnn.mingru_init(jax.random.key(0), 3, 4)
        >>> rule = jaxrnn.get_cell("mingru").scan_rule
        >>> xs, h0 = jnp.ones((5, 2, 3)), jnp.zeros((2, 4))
        >>> final, ys = rule(p, h0, h0, xs, None, None, reverse=False, unroll=1, options={})
        >>> want = jax.lax.scan(lambda h, x: jaxrnn.mingru_step(p, h, x), h0, xs)[1]
        >>> bool(jnp.allclose(ys, want, atol=1e-6))
        True
    """

    coefficients: Callable[..., tuple[jax.Array, jax.Array]]
    block: int = BLOCK
    segments: bool = False
    readout: Callable[..., jax.Array] | None = None
    complex_state: bool = False

    #: The carry after a slice depends on the carry before it only through one
    #: affine map, so slices of the sequence on several devices can be composed.
    time_sharding: ClassVar[bool] = True

    def __call__(
        self, params, carry, carry0, xs, keep, reset, *, reverse, unroll, options, axis_name=None
    ):
        """``(carry, ys)`` of the masked scan (see :mod:`jaxrnn._masking`).

        With ``axis_name``, ``xs``, ``keep`` and ``reset`` are one device's slice
        of a sequence split over that mesh axis (:func:`sharded_linear_scan`);
        ``carry``, ``carry0`` and the returned carry are the whole sequence's.
        """
        del unroll, options  # no sequential loop to unroll; no step options (step_options)
        if self.segments:
            state, state0 = carry.h, carry0.h
            started, after = segment_flags(
                carry.started, carry0.started, keep, reset, xs.shape[0],
                reverse=reverse, axis_name=axis_name,
            )  # fmt: skip
            a, b = self.coefficients(params, xs, started)
        else:
            state, state0 = (carry.s, carry0.s) if self.readout else (carry, carry0)
            a, b = self.coefficients(params, xs)
        h_in, h0 = (working_state(x, a.dtype, self.complex_state) for x in (state, state0))
        if reset is not None:  # the step from the initial carry: A_t H_0 + B_t
            b = b + where(reset, a * h0[None], jnp.zeros_like(b))
            a = where(reset, jnp.zeros_like(a), a)
        if keep is not None:  # padding: the identity map
            a = where(keep, a, jnp.ones_like(a))
            b = where(keep, b, jnp.zeros_like(b))
        solve = functools.partial(self._solve, reverse=reverse, axis_name=axis_name)
        hs, final = solve(a, b, h_in)
        final = carried_state(final, state.dtype, self.complex_state)
        ys = hs if self.readout is None else self.readout(params, xs, hs)
        ys = ys.astype(state.dtype if self.readout is None else carry.y.dtype)
        if keep is not None:
            ys = where(keep, ys, jnp.zeros_like(ys))
        if self.segments:
            return SegmentState(final, after), ys
        if self.readout is not None:
            y_last = last_output(ys, carry.y, keep, reverse=reverse, solve=solve)
            return ReadoutState(y_last.astype(carry.y.dtype), final), ys
        return final, ys

    def _solve(self, a, b, h_in, *, reverse, axis_name):
        """``(hs, final)`` of the recurrence, over this device's slice where ``axis_name``."""
        if axis_name is not None:
            return sharded_linear_scan(a, b, h_in, axis_name, reverse=reverse, block=self.block)
        hs = linear_scan(a, b, h_in, reverse=reverse, block=self.block)
        if a.shape[0] == 0:
            return hs, h_in
        return hs, hs[0] if reverse else hs[-1]


def linear_step(coefficients, params, carry, x):
    """``H_t = A_t ⊙ H_{t-1} + B_t``: one step of the cell that ``coefficients`` defines.

    The step a :class:`LinearRecurrence` cell registers is this, with its own
    argument checks before it: ``coefficients(params, x) -> (A_t, B_t)`` is the
    one place its equations are written, for one step here and for all steps at
    once in the rule. The update runs in the coefficients' dtype and is cast
    back to the carry's; the output is ``H_t``.

    Example:
        >>> import functools, jax.numpy as jnp, jaxrnn
        >>> halve = lambda params, x: (jnp.full_like(x, 0.5), x)  # H_t = H_{t-1} / 2 + X_t
        >>> jaxrnn.rules.linear_step(halve, None, jnp.array([4.0]), jnp.array([1.0]))[1].tolist()
        [3.0]
    """
    a, b = coefficients(params, x)
    h = (a * carry.astype(a.dtype) + b).astype(carry.dtype)
    return h, h


def input_projection(x, w_x, b, gates: int):
    """The ``gates`` blocks of ``x @ w_x + b`` for ``x (..., d)``, each ``(..., h)``.

    One 2-D matmul over all steps and sequences as rows, accumulated in at
    least float32 (bfloat16 params give float32 pre-activations, so the
    coefficients and the scan run in float32), cut with :func:`jnp.split`,
    whose gradient is a concatenation. The gradient of a slice is a pad, and on
    CPU XLA then evaluates the gate derivatives one element at a time, without
    vector instructions: 1.6x slower for minGRU's gradient.
    """
    working = jnp.promote_types(w_x.dtype, jnp.float32)
    if any(_sharding.parts(x)):
        # Rows merged over a sharded batch axis have no sharding to state: one
        # matmul over the leading axes as they are (XLA:CPU's 2-D GEMM is faster).
        out = jnp.matmul(x, w_x, preferred_element_type=working)
    else:
        rows = x.reshape(-1, x.shape[-1])
        out = jnp.matmul(rows, w_x, preferred_element_type=working)
        out = out.reshape(*x.shape[:-1], w_x.shape[-1])
    out = out + bias(b.astype(working), out)
    return jnp.split(out, gates, axis=-1)


def linear_scan(a, b, h0, *, reverse=False, block=BLOCK):
    """Every ``H_t`` of ``H_t = a_t ⊙ H_{t-1} + b_t`` from ``H_{-1} = h0``, in parallel.

    Args:
        a, b: ``(T, *shape)`` coefficients, of one floating dtype.
        h0: ``(*shape)``, the state before the first step.
        reverse: run from ``t = T - 1`` down to 0 (``H_{T}`` is then ``h0``).
        block: steps scanned one by one inside each block, all blocks at once,
            before :func:`jax.lax.associative_scan` combines the blocks (see the
            module docstring); ``1`` scans all ``T`` pairs associatively.

    Returns:
        ``hs (T, *shape)``, equal to ``lax.scan`` of the step up to rounding; it
        has a reverse-mode gradient of its own (no forward mode).

    Example:
        >>> import jax.numpy as jnp
        >>> from jaxrnn.rules import linear_scan
        >>> linear_scan(jnp.full((4,), 0.5), jnp.ones(4), jnp.array(8.0)).tolist()
        [5.0, 3.5, 2.75, 2.375]
    """
    if not isinstance(block, int) or isinstance(block, bool) or block < 1:
        raise ValueError(f"block: expected a positive int, got {block!r}")
    return _linear_scan(bool(reverse), block, a, b, h0)


def sharded_linear_scan(a, b, h0, axis_name, *, reverse=False, block=BLOCK):
    """:func:`linear_scan` of a sequence whose time axis is split over the mesh axis ``axis_name``.

    For use inside :func:`jax.shard_map` (or ``pmap``): ``a, b (T_k, *shape)``
    are device ``k``'s slice of the sequence, the ``k``-th of ``n`` in order
    along ``axis_name``, and ``h0`` is the state before the whole sequence, the
    same on every device. Three stages, the carry correction of a linear
    recurrence (as RecurrentGemma shards its RG-LRU over time):

    1. each device folds its slice into one map ``h -> A h + B``: ``A`` is the
       product of its ``a_t`` and ``B`` its final state from a zero state (one
       pass over the slice, in blocks);
    2. the ``n`` maps are gathered from all devices (``2n`` arrays of ``shape``,
       the only communication) and composed in the recurrence's order, which
       gives the true incoming state of every slice and the final state;
    3. each device solves its slice from its incoming state (:func:`linear_scan`).

    Time and memory per device are those of a ``T_k``-step scan; no device
    holds more than its slice. Gradients flow through all three stages (the
    gather's transpose is a reduce-scatter), so they equal those of the
    unsharded scan up to rounding.

    Args:
        a, b: ``(T_k, *shape)``, this device's coefficients.
        h0: ``(*shape)``, the state before the first step of the whole sequence
            (after the last, if ``reverse``).
        axis_name: the mesh axis (or tuple of axes) the time axis is split over.
        reverse: run from the last step of the last device back to the first.
        block: as for :func:`linear_scan`.

    Returns:
        ``(hs, final)``: this device's states ``(T_k, *shape)``, and the state
        after the whole sequence, the same on (and invariant over) every device.
    """
    if a.shape[0] == 0:  # every slice is empty
        return b, h0
    totals = jax.tree.map(lambda x: lax.all_gather(x, axis_name), _total(a, b, reverse, block))
    ends = _ends(totals, h0, reverse)
    starts = _shift(ends, h0, reverse)
    index = lax.axis_index(axis_name)
    hs = linear_scan(a, b, starts[index], reverse=reverse, block=block)
    # Every device computed the same final state from the same gathered maps; a
    # sum with the others' zeros says so to shard_map (an output it may replicate).
    final = ends[0] if reverse else ends[-1]
    final = lax.psum(jnp.where(index == 0, final, jnp.zeros_like(final)), axis_name)
    return hs, final


def _total(a, b, reverse, block):
    """The map ``h -> A h + B`` of all ``T > 0`` steps of ``a, b (T, *shape)``, in one pass."""
    totals = _block_totals(*_in_blocks(a, b, min(block, a.shape[0])), reverse)
    through = lax.associative_scan(_combine, totals, reverse=reverse)
    return jax.tree.map(lambda x: x[0 if reverse else -1], through)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _linear_scan(reverse, block, a, b, h0):
    return _solve(a, b, h0, reverse, block)


def _linear_scan_fwd(reverse, block, a, b, h0):
    hs = _solve(a, b, h0, reverse, block)
    return hs, (a, hs, h0)


def _linear_scan_bwd(reverse, block, saved, d_hs):
    a, hs, h0 = saved
    zero = jnp.zeros_like(h0)
    if a.shape[0] == 0:
        return jnp.zeros_like(a), jnp.zeros_like(a), zero
    # G_t, the cotangent of H_t, is dH_t plus what H_{t+1} (next in the recurrence's
    # order) passes back, q_{t+1} = a_{t+1} G_{t+1}. So q_t = a_t q_{t+1} + a_t dH_t:
    # the same coefficients, run the other way.
    q = _solve(a, a * d_hs, zero, not reverse, block)
    g = d_hs + _shift(q, zero, not reverse)
    h_prev = _shift(hs, h0, reverse)
    return g * h_prev, g, q[-1 if reverse else 0]


_linear_scan.defvjp(_linear_scan_fwd, _linear_scan_bwd)


def _shift(xs, fill, reverse):
    """``xs`` one step later in the recurrence's order, ``fill`` entering first."""
    if reverse:
        return jnp.concatenate([xs[1:], fill[None]])
    return jnp.concatenate([fill[None], xs[:-1]])


def _combine(earlier, later):
    a1, b1 = earlier
    a2, b2 = later
    return a2 * a1, a2 * b1 + b2


def _solve(a, b, h0, reverse, block):
    a, b, h0 = jnp.asarray(a), jnp.asarray(b), jnp.asarray(h0)
    length = a.shape[0]
    if length == 0:
        return b
    if length > block:
        return _blocked(a, b, h0, reverse, block)
    # A single block: the plain associative scan, h0 folded into the first pair.
    first = length - 1 if reverse else 0
    b = b.at[first].add(a[first] * h0)
    return lax.associative_scan(_combine, (a, b), reverse=reverse)[1]


def _in_blocks(a, b, block):
    """``a, b (T, *shape)`` as ``(n, block, *shape)``, ``n = ceil(T / block)``.

    The end is padded with identity pairs ``(1, 0)``, which leave every state in
    either direction as it is.
    """
    length, shape = a.shape[0], a.shape[1:]
    n = -(-length // block)
    pad = n * block - length
    if pad:
        widths = [(0, pad)] + [(0, 0)] * len(shape)
        a = jnp.pad(a, widths, constant_values=1)
        b = jnp.pad(b, widths)
    return tuple(_sharding.reshape(x, (n, block, *shape), len(shape)) for x in (a, b))


def _position(i, block, reverse):
    """The ``i``-th step of every block, in the recurrence's order."""
    return block - 1 - i if reverse else i


def _block_totals(a, b, reverse):
    """Each block's total map ``(A, B)`` for blocked ``a, b (n, block, *shape)``:
    ``block`` vectorised steps over all ``n`` blocks at once."""
    block = a.shape[1]

    def pair(i):
        j = _position(i, block, reverse)
        return tuple(lax.dynamic_index_in_dim(x, j, 1, keepdims=False) for x in (a, b))

    # Started from the first pair, not the identity: inside shard_map the loop's
    # carry then varies over the devices from the start, as its body's result does.
    return lax.fori_loop(1, block, lambda i, acc: _combine(acc, pair(i)), pair(0))


def _ends(totals, h0, reverse):
    """The state after each of a run of maps ``totals (n, *shape)``, from ``h0``."""
    through_a, through_b = lax.associative_scan(_combine, totals, reverse=reverse)
    return through_a * h0[None] + through_b


def _blocked(a, b, h0, reverse, block):
    """:func:`_solve` of ``a, b (T, *shape)`` in blocks of ``block`` steps.

    Three passes over time cut into blocks (:func:`_in_blocks`): each block's
    total map, the associative scan of the totals (each block's incoming
    state), and each block's own states from it, written over ``b`` in place.
    """
    length, shape = a.shape[0], a.shape[1:]
    a, b = _in_blocks(a, b, block)
    starts = _shift(_ends(_block_totals(a, b, reverse), h0, reverse), h0, reverse)

    def states(i, carry):
        h, hs = carry  # hs holds b where it has not been overwritten yet
        j = _position(i, block, reverse)
        at = lax.dynamic_index_in_dim(a, j, 1, keepdims=False)
        h = at * h + lax.dynamic_index_in_dim(hs, j, 1, keepdims=False)
        return h, lax.dynamic_update_index_in_dim(hs, h, j, 1)

    _, hs = lax.fori_loop(0, block, states, (starts, b))
    hs = _sharding.reshape(hs, (hs.shape[0] * hs.shape[1], *shape), len(shape))
    return hs[:length]
