"""Matrix memories with exponential gates (xLSTM's mLSTM) over a whole sequence, in chunks.

Per head, the mLSTM (Beck et al. 2024) keeps a matrix ``C`` and a vector ``n``
scaled by ``exp(-m)``, ``m`` a running log-scale (the stabiliser)::

    m_t = max(log σ(f~_t) + m_{t-1}, i~_t)
    C_t = exp(log σ(f~_t) + m_{t-1} - m_t) C_{t-1} + exp(i~_t - m_t) k_t v_tᵀ
    n_t = exp(log σ(f~_t) + m_{t-1} - m_t) n_{t-1} + exp(i~_t - m_t) k_t
    h~_t = C_tᵀ q_t / (max(|n_tᵀ q_t|, exp(-m_t)) + eps)

None of the gates reads the output, so unrolled, with ``F_t`` the running sum
of ``log σ(f~)``, every source ``j <= t`` (a step's ``k_j v_jᵀ``, or the state
before the sequence) enters ``C_t`` with the weight ``exp(i~_j + F_t - F_j - m_t)``,
and ``m_t`` is the largest of those exponents (the state before the sequence
counts with ``m_0 + F_t``). :func:`matrix_scan` computes that directly:

* **quadratic form** (Beck et al.'s parallel form, for ``T <= chunk``): the
  ``T x T`` matrix of those log-weights, its row maxima as ``m_t``, and
  ``h~ = ((q kᵀ) ⊙ D) v`` plus the initial state's share, two matmuls;
* **chunkwise form** (longer sequences): the same inside chunks of ``chunk``
  steps, with ``(C, n, m)`` carried from chunk to chunk by a ``lax.scan``. Memory
  (and the activations a gradient keeps) grows as ``T·chunk``, not ``T²``, and
  the running sums ``F`` stay within a chunk, so they lose no precision however
  long the sequence (a sum over all ``T`` steps differences to 1e-3 at T=16384).

Both equal the step loop up to rounding, ``m`` included: the max over a row is
the step's nested max unrolled. Gradients are JAX's through this computation.
Padded steps become the identity (``i~ = -inf``, ``log σ(f~) = 0``, ``q = k = v = 0``),
so padding never enters the memory; a reset cuts the log-weights across it and
makes the reset state (:func:`jaxrnn.scan`'s initial carry) the source with
``m_0``; ``reverse`` runs the flipped sequence.

**Time sharding.** A slice of the sequence acts on the state as the map
``S -> (m, C, n)``, ``m = max(m_S + G, m_L)``, ``C = exp(m_S + G - m) C_S +
exp(m_L - m) C_L`` (``n`` alike), ``G`` the slice's summed ``log σ(f~)``
(``-inf`` past a reset) and ``(C_L, n_L, m_L)`` what its own steps leave. The
``C`` part is minGRU's linear map and the stabiliser composes by ``max`` and
``+``, so such maps compose associatively and :func:`sharded_matrix_scan`
shards the time axis exactly as :func:`jaxrnn.rules.sharded_linear_scan` does:
the same ``m`` at every step as the unsharded scan, values and gradients equal
up to rounding.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from jaxrnn import _sharding
from jaxrnn._masking import where
from jaxrnn.rules.base import ScanRule

#: The chunk length of :class:`MatrixMemory` by default.
CHUNK = 64
#: The readout's ``eps``, as in the ``xlstm`` package.
EPS = 1e-6


class MatrixState(NamedTuple):
    """The carry of a matrix memory (the mLSTM's), with ``K`` heads of ``s`` units.

    ``C`` and ``n`` are the memory times ``exp(-m)``; the zero carry is the
    empty memory, and its ``m = 0`` only sets the scale.
    """

    h: jax.Array  # (*batch, K*s): the last output H_t
    c: jax.Array  # (*batch, K, s, s): the matrix memory C_t, keys by values
    n: jax.Array  # (*batch, K, s): the normaliser n_t
    m: jax.Array  # (*batch, K): the stabiliser m_t


class MatrixInputs(NamedTuple):
    """What a step reads from its input, for inputs ``(*lead, d)``: the cell's projections."""

    q: jax.Array  # (*lead, K, s) queries
    k: jax.Array  # (*lead, K, s) keys, already scaled (the mLSTM's 1/sqrt(s))
    v: jax.Array  # (*lead, K, s) values
    i: jax.Array  # (*lead, K) input gate pre-activation i~
    f: jax.Array  # (*lead, K) forget gate pre-activation f~
    o: jax.Array  # (*lead, K*s) output gate, multiplied onto the heads' h~


def matrix_step(inputs: MatrixInputs, carry: MatrixState, eps: float = EPS):
    """One step of the matrix memory: ``(MatrixState, H_t)``, ``H_t = o ⊙ concat_heads(h~_t)``.

    Computed in the inputs' dtype (at least float32) and cast back to the carry's.
    """
    q, k, v, i_pre, f_pre, o = inputs
    work = q.dtype
    c, n, m = (a.astype(work) for a in carry[1:])
    log_f = jax.nn.log_sigmoid(f_pre) + m
    m_new = jnp.maximum(log_f, i_pre)
    f, i = jnp.exp(log_f - m_new), jnp.exp(i_pre - m_new)
    c = f[..., None, None] * c + i[..., None, None] * (k[..., :, None] * v[..., None, :])
    n = f[..., None] * n + i[..., None] * k
    num = jnp.einsum("...ij,...i->...j", c, q)
    h = o * _readout(num, jnp.sum(n * q, axis=-1), m_new, eps).reshape(o.shape)
    new = (h, c, n, m_new)
    state = MatrixState(*(a.astype(old.dtype) for a, old in zip(new, carry, strict=True)))
    return state, state.h


def _readout(num, den, m, eps):
    return num / (jnp.maximum(jnp.abs(den), jnp.exp(-m)) + eps)[..., None]


@dataclasses.dataclass(frozen=True)
class MatrixMemory(ScanRule):
    """The scan rule of a matrix-memory cell (the mLSTM): :func:`matrix_scan` of its inputs.

    Attributes:
        inputs: ``inputs(params, xs) -> MatrixInputs`` for ``xs (T, *batch, d)``; the
            same function must define the cell's step (with :func:`matrix_step`).
        chunk: the chunk length ``L``; sequences of at most ``L`` steps take the
            quadratic form.
        eps: the readout's ``eps`` (the step's).
    """

    inputs: Callable[[Any, jax.Array], MatrixInputs]
    chunk: int = CHUNK
    eps: float = EPS

    #: A slice of the sequence maps the state before it to the state after it by a
    #: scaled linear map with a max-plus stabiliser, and such maps compose.
    time_sharding: ClassVar[bool] = True

    def __post_init__(self):
        if isinstance(self.chunk, bool) or not isinstance(self.chunk, int) or self.chunk < 1:
            raise ValueError(f"MatrixMemory.chunk: expected a positive int, got {self.chunk!r}")

    def __call__(
        self, params, carry, carry0, xs, keep, reset, *, reverse, unroll, options, axis_name=None
    ):
        """``(carry, ys)`` of the masked scan (:class:`jaxrnn.rules.ScanRule`)."""
        del unroll, options  # no loop over steps; no step options
        flip = (lambda a: None if a is None else jnp.flip(a, 0)) if reverse else (lambda a: a)
        inputs, keep, reset = self.inputs(params, flip(xs)), flip(keep), flip(reset)
        if axis_name is None:
            final, ys = matrix_scan(
                inputs, carry, carry0, keep, reset, chunk=self.chunk, eps=self.eps
            )
        else:
            final, ys = sharded_matrix_scan(
                inputs, carry, carry0, keep, reset, axis_name,
                reverse=reverse, chunk=self.chunk, eps=self.eps,
            )  # fmt: skip
        return final, flip(ys)


def matrix_scan(inputs, carry, carry0=None, keep=None, reset=None, *, chunk=CHUNK, eps=EPS):
    """Every step of the matrix memory at once: ``(final MatrixState, ys (T, *batch, K*s))``.

    Args:
        inputs: a :class:`MatrixInputs` with a leading time axis ``T``.
        carry: the :class:`MatrixState` before the first step.
        carry0: the state a reset restores (default ``carry``).
        keep: ``None`` or a bool ``(T, *batch)``, false on padded steps (the identity,
            output 0).
        reset: ``None`` or a bool ``(T, *batch)``, true where the state is ``carry0``
            before the step.
        chunk: ``L``; ``T <= L`` is one chunk, the quadratic form.
        eps: the readout's ``eps``.

    Example:
        >>> import jax, jax.numpy as jnp, jaxrnn
        >>> p = jaxrnn.mlstm_init(jax.random.key(0), 3, 8, num_heads=2)
        >>> xs, carry = jnp.ones((20, 2, 3)), jaxrnn.initial_carry(p, (2,))
        >>> inputs = jaxrnn.cells.mlstm.mlstm_inputs(p, xs)
        >>> final, ys = jaxrnn.rules.matrix_scan(inputs, carry, chunk=8)
        >>> want = jax.lax.scan(lambda c, x: jaxrnn.mlstm_step(p, c, x), carry, xs)[1]
        >>> bool(jnp.allclose(ys, want, atol=1e-6))
        True
    """
    carry0 = carry if carry0 is None else carry0
    length, batch = inputs.q.shape[0], carry.m.shape[:-1]
    heads, size = inputs.q.shape[-2:]
    if length == 0:
        return carry, jnp.zeros((0, *carry.h.shape), carry.h.dtype)
    work = inputs.q.dtype
    reset = jnp.zeros((length, *batch), bool) if reset is None else reset
    xs, chunks, steps = _chunks(_identity_padding(inputs, keep), reset, chunk)
    n_seq = math.prod(batch)
    flat = lambda state: tuple(a.astype(work).reshape(n_seq, *a.shape[len(batch) :]) for a in state)
    init = flat(carry0[1:])

    def body(prev, xs):
        return _chunk(prev, init, xs, eps)

    if chunks == 1:  # the quadratic form: no loop
        (c, n, m), h_tilde = body(flat(carry[1:]), jax.tree.map(lambda a: a[0], xs))
        h_tilde = h_tilde[None]
    else:
        (c, n, m), h_tilde = lax.scan(body, flat(carry[1:]), xs)
    # (chunks, N, K, L, s) -> (T, *batch, K*s)
    h_tilde = jnp.moveaxis(h_tilde, 3, 1)
    h_tilde = h_tilde.reshape(*h_tilde.shape[:3], heads * size)
    h_tilde = _sharding.reshape(h_tilde, (chunks * steps, *batch, heads * size), 1 + len(batch))
    h_tilde = h_tilde[:length]
    ys = inputs.o * h_tilde
    final_h = ys[-1]  # without lengths, the last step ran for every sequence
    if keep is not None:
        ys = where(keep, ys, jnp.zeros_like(ys))
        # The output of the last step that ran, for the carry (the given one if none ran).
        t = jnp.arange(length).reshape(length, *(1,) * len(batch))
        last = jnp.max(jnp.where(keep, t, -1), axis=0)
        at_last = jnp.take_along_axis(ys, jnp.maximum(last, 0)[None, ..., None], axis=0)[0]
        final_h = where(last >= 0, at_last, carry.h.astype(work))
    unflat = lambda a, like: a.reshape(like.shape).astype(like.dtype)
    final = MatrixState(
        unflat(final_h, carry.h), unflat(c, carry.c), unflat(n, carry.n), unflat(m, carry.m)
    )
    return final, ys.astype(carry.h.dtype)


def _identity_padding(inputs, keep):
    """``inputs`` with ``f`` as ``log σ(f~)`` and padded steps (``keep`` false) the identity:
    no query, key or value (NaN-proof), ``i~ = -inf``, ``log σ(f~) = 0``."""
    lf = jax.nn.log_sigmoid(inputs.f)
    if keep is None:
        return inputs._replace(f=lf)
    q, k, v = (where(keep, a, jnp.zeros_like(a)) for a in inputs[:3])
    ig = where(keep, inputs.i, jnp.full_like(inputs.i, -jnp.inf))
    return MatrixInputs(q, k, v, ig, where(keep, lf, jnp.zeros_like(lf)), inputs.o)


def _chunks(inputs, reset, chunk):
    """``(q, k, v, ig, lf, reset)`` as ``(chunks, N, K, L, ...)`` (``N`` sequences, chunks of
    ``L`` steps, the last padded with identity steps), ``chunks`` and ``L``.

    ``inputs`` as :func:`_identity_padding` gives them.
    """
    length, n_seq = reset.shape[0], math.prod(reset.shape[1:])
    steps = min(chunk, length)
    chunks = -(-length // steps)
    pad = chunks * steps - length

    def cut(a, fill, head_axes=True):
        a = a.reshape(length, n_seq, *a.shape[reset.ndim :])
        if pad:
            a = jnp.concatenate([a, jnp.full((pad, *a.shape[1:]), fill, a.dtype)])
        a = a.reshape(chunks, steps, *a.shape[1:])
        return jnp.moveaxis(a, 1, 3 if head_axes else 2)

    q, k, v, ig, lf, _ = inputs
    xs = (cut(q, 0), cut(k, 0), cut(v, 0), cut(ig, -jnp.inf), cut(lf, 0), cut(reset, False, False))
    return xs, chunks, steps


def _chunk(prev, init, xs, eps):
    """One chunk of ``L`` steps from the state ``prev``: ``(state after it, h~ (N, K, L, s))``.

    ``init`` is the state a reset restores. Inputs ``q, k, v (N, K, L, s)``, ``ig, lf
    (N, K, L)``, ``reset (N, L)``.
    """
    q, k, v, ig, lf, reset = xs
    steps = ig.shape[-1]
    big_f = jnp.cumsum(lf, axis=-1)  # F_s, from the chunk's start
    idx = jnp.arange(steps)
    last_reset = lax.cummax(jnp.where(reset, idx, -1), axis=1)  # (N, L)
    after = (last_reset >= 0)[:, None, :]  # (N, 1, L): the source is init, not prev
    # F just before the last reset: the log-decay the reset state has gathered since.
    before = jnp.take_along_axis(
        big_f - lf, jnp.broadcast_to(jnp.maximum(last_reset, 0)[:, None], big_f.shape), axis=-1
    )
    base_f = big_f - jnp.where(after, before, jnp.zeros_like(before))
    prev_c, prev_n, prev_m = prev
    init_c, init_n, init_m = init
    base_log = jnp.where(after, init_m[..., None], prev_m[..., None]) + base_f  # (N, K, L)
    segment = jnp.cumsum(reset, axis=1)
    visible = (segment[:, :, None] == segment[:, None, :]) & (idx[:, None] >= idx[None, :])[None]
    log_d = ig[..., None, :] + big_f[..., :, None] - big_f[..., None, :]  # [.., s, j]
    log_d = jnp.where(visible[:, None], log_d, jnp.full_like(log_d, -jnp.inf))
    m = jnp.maximum(base_log, jnp.max(log_d, axis=-1))  # (N, K, L)
    d = jnp.exp(log_d - m[..., None])
    w_base = jnp.exp(base_log - m)
    scores = jnp.einsum("nkls,nkjs->nklj", q, k) * d
    qc = jnp.where(
        after[..., None],
        jnp.einsum("nkls,nksj->nklj", q, init_c),
        jnp.einsum("nkls,nksj->nklj", q, prev_c),
    )
    qn = jnp.where(
        after, jnp.einsum("nkls,nks->nkl", q, init_n), jnp.einsum("nkls,nks->nkl", q, prev_n)
    )
    num = jnp.einsum("nklj,nkjs->nkls", scores, v) + w_base[..., None] * qc
    h_tilde = _readout(num, jnp.sum(scores, axis=-1) + w_base * qn, m, eps)
    # The state after the chunk's last step.
    end = after[:, :, -1]  # (N, 1)
    w_end, d_end = w_base[..., -1], d[..., -1, :]
    c = jnp.einsum("nkj,nkji,nkjl->nkil", d_end, k, v) + w_end[..., None, None] * jnp.where(
        end[..., None, None], init_c, prev_c
    )
    n = jnp.einsum("nkj,nkji->nki", d_end, k) + w_end[..., None] * jnp.where(
        end[..., None], init_n, prev_n
    )
    return (c, n, m[..., -1]), h_tilde


# Time sharding (see the module docstring); a state is the map with G = -inf ----------------


def _compose(earlier, later):
    """The map of ``earlier`` then ``later``, each ``(g, c, n, m)`` (``m = -inf``: nothing)."""
    g1, c1, n1, m1 = earlier
    g2, c2, n2, m2 = later
    decayed = m1 + g2
    m = jnp.maximum(decayed, m2)
    safe = jnp.where(jnp.isneginf(m), jnp.zeros_like(m), m)
    w1, w2 = jnp.exp(decayed - safe), jnp.exp(m2 - safe)
    c = w1[..., None, None] * c1 + w2[..., None, None] * c2
    return g1 + g2, c, w1[..., None] * n1 + w2[..., None] * n2, m


def _chunk_maps(xs, init):
    """Each chunk's map ``(g, c, n, m)`` (leading axis: chunks), from its last step's weights."""
    _, k, v, ig, lf, reset = xs  # (chunks, N, K, L, ...), reset (chunks, N, L)
    big_f = jnp.cumsum(lf, axis=-1)
    total = big_f[..., -1:]  # (chunks, N, K, 1)
    idx = jnp.arange(ig.shape[-1])
    last_reset = jnp.max(jnp.where(reset, idx[None, None], -1), axis=-1)  # (chunks, N)
    cut = (last_reset >= 0)[..., None]  # (chunks, N, 1)
    # Sources after the last reset, weighted to the chunk's end; the reset state before them.
    visible = (idx[None, None] >= last_reset[..., None])[:, :, None]  # (chunks, N, 1, L)
    log_w = jnp.where(visible, ig + total - big_f, jnp.full_like(ig, -jnp.inf))
    before = jnp.take_along_axis(
        big_f - lf, jnp.broadcast_to(jnp.maximum(last_reset, 0)[:, :, None, None], total.shape), -1
    )[..., 0]
    init_c, init_n, init_m = init
    init_log = jnp.where(
        cut, init_m[None] + total[..., 0] - before, jnp.full_like(before, -jnp.inf)
    )
    m = jnp.maximum(jnp.max(log_w, axis=-1), init_log)  # (chunks, N, K)
    safe = jnp.where(jnp.isneginf(m), jnp.zeros_like(m), m)
    w = jnp.exp(log_w - safe[..., None])
    w_init = jnp.exp(init_log - safe)
    c = jnp.einsum("cnkj,cnkji,cnkjl->cnkil", w, k, v) + w_init[..., None, None] * init_c[None]
    n = jnp.einsum("cnkj,cnkji->cnki", w, k) + w_init[..., None] * init_n[None]
    g = jnp.where(cut, jnp.full_like(init_log, -jnp.inf), total[..., 0])
    return g, c, n, m


def sharded_matrix_scan(
    inputs, carry, carry0, keep, reset, axis_name, *, reverse=False, chunk=CHUNK, eps=EPS
):
    """:func:`matrix_scan` of a sequence whose time axis is split over the mesh axis ``axis_name``.

    As :func:`jaxrnn.rules.sharded_linear_scan` does for a linear recurrence: each
    device folds its slice into one map of the state (its chunks' maps composed in
    order), the maps of all devices are gathered (``(B, K, s, s)`` and three
    smaller arrays from each) and composed in order, which gives each slice's
    incoming state and the final state, and each device then runs its slice from
    its incoming state. ``inputs``, ``keep`` and ``reset`` are this device's slice
    in the order the recurrence runs it (flipped for ``reverse``, which runs the
    devices from the last to the first). Returns ``(final, ys)``, ``final`` the
    same on every device.
    """
    length, batch = inputs.q.shape[0], carry.m.shape[:-1]
    work = inputs.q.dtype
    n_seq = math.prod(batch)
    if reset is None:
        reset = jnp.zeros((length, *batch), bool)
    flat = lambda state: tuple(a.astype(work).reshape(n_seq, *a.shape[len(batch) :]) for a in state)
    state_in = flat(carry[1:])
    zeros = [jnp.zeros_like(a) for a in (state_in[2], *state_in[:2])]
    own = (*zeros, jnp.full_like(state_in[2], -jnp.inf))  # the identity map
    if length:
        xs = _chunks(_identity_padding(inputs, keep), reset, chunk)[0]
        maps = _chunk_maps(xs, flat(carry0[1:]))
        own = lax.scan(lambda acc, later: (_compose(acc, later), None), own, maps)[0]
    gathered = jax.tree.map(lambda a: lax.all_gather(a, axis_name), own)
    devices = gathered[0].shape[0]
    order = range(devices - 1, -1, -1) if reverse else range(devices)
    state = (jnp.full_like(state_in[2], -jnp.inf), *state_in)
    starts = [None] * devices
    for d in order:
        starts[d] = state
        state = _compose(state, jax.tree.map(lambda a, d=d: a[d], gathered))
    index = lax.axis_index(axis_name)
    start = jax.tree.map(lambda *a: jnp.stack(a)[index], *starts)
    unflat = lambda a, like: a.reshape(like.shape).astype(like.dtype)
    begin = MatrixState(
        carry.h, *(unflat(a, like) for a, like in zip(start[1:], carry[1:], strict=True))
    )
    local, ys = matrix_scan(inputs, begin, carry0, keep, reset, chunk=chunk, eps=eps)
    # The last output overall: from the last device (in the recurrence's order) that ran a step.
    ran = jnp.any(keep, axis=0) if keep is not None else jnp.full(batch, length > 0)
    ran = lax.all_gather(ran, axis_name)  # (devices, *batch)
    last_h = lax.all_gather(local.h, axis_name)
    h = carry.h
    for d in order:
        h = jnp.where(ran[d][..., None], last_h[d], h)
    final = MatrixState(h, *(unflat(a, like) for a, like in zip(state[1:], carry[1:], strict=True)))
    # The same final state on every device; a sum with the others' zeros says so.
    final = jax.tree.map(
        lambda a: lax.psum(jnp.where(index == 0, a, jnp.zeros_like(a)), axis_name), final
    )
    return final, ys
