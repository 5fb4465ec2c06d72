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
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

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

    time_sharding: ClassVar[bool] = False

    def __post_init__(self):
        if isinstance(self.chunk, bool) or not isinstance(self.chunk, int) or self.chunk < 1:
            raise ValueError(f"MatrixMemory.chunk: expected a positive int, got {self.chunk!r}")

    def __call__(
        self, params, carry, carry0, xs, keep, reset, *, reverse, unroll, options, axis_name=None
    ):
        """``(carry, ys)`` of the masked scan (:class:`jaxrnn.rules.ScanRule`)."""
        del unroll, options, axis_name  # no loop over steps; no step options; no sharding
        flip = (lambda a: None if a is None else jnp.flip(a, 0)) if reverse else (lambda a: a)
        inputs = self.inputs(params, flip(xs))
        final, ys = matrix_scan(
            inputs, carry, carry0, flip(keep), flip(reset), chunk=self.chunk, eps=self.eps
        )
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
    keep = jnp.ones((length, *batch), bool) if keep is None else keep
    reset = jnp.zeros((length, *batch), bool) if reset is None else reset
    # Padding: the identity step, with no query, key or value (NaN-proof).
    q, k, v = (where(keep, a, jnp.zeros_like(a)) for a in inputs[:3])
    ig = where(keep, inputs.i, jnp.full_like(inputs.i, -jnp.inf))
    lf = where(keep, jax.nn.log_sigmoid(inputs.f), jnp.zeros_like(inputs.f))

    # (T, *batch, K, ...) -> (chunks, N, K, L, ...): N sequences, chunks of L steps.
    n_seq = math.prod(batch)
    steps = min(chunk, length)
    chunks = -(-length // steps)
    pad = chunks * steps - length

    def cut(a, fill, head_axes=True):
        a = a.reshape(length, n_seq, *a.shape[1 + len(batch) :])
        if pad:
            a = jnp.concatenate([a, jnp.full((pad, *a.shape[1:]), fill, a.dtype)])
        a = a.reshape(chunks, steps, *a.shape[1:])
        return jnp.moveaxis(a, 1, 3 if head_axes else 2)

    xs = (
        cut(q, 0), cut(k, 0), cut(v, 0), cut(ig, -jnp.inf), cut(lf, 0), cut(reset, False, False)
    )  # fmt: skip
    flat = lambda state: tuple(a.astype(work).reshape(n_seq, *a.shape[len(batch) :]) for a in state)
    init = flat(carry0[1:])

    def body(prev, xs):
        return _chunk(prev, init, xs, eps)

    (c, n, m), h_tilde = lax.scan(body, flat(carry[1:]), xs)
    # (chunks, N, K, L, s) -> (T, *batch, K*s)
    h_tilde = jnp.moveaxis(h_tilde, 3, 1).reshape(chunks * steps, *batch, heads * size)[:length]
    ys = where(keep, inputs.o * h_tilde, jnp.zeros_like(h_tilde))
    # The output of the last step that ran, for the carry (the given one if none ran).
    t = jnp.arange(length).reshape(length, *(1,) * len(batch))
    last = jnp.max(jnp.where(keep, t, -1), axis=0)
    at_last = jnp.take_along_axis(ys, jnp.maximum(last, 0)[None, ..., None], axis=0)[0]
    h = where(last >= 0, at_last, carry.h.astype(work))
    unflat = lambda a, like: a.reshape(like.shape).astype(like.dtype)
    final = MatrixState(
        unflat(h, carry.h), unflat(c, carry.c), unflat(n, carry.n), unflat(m, carry.m)
    )
    return final, ys.astype(carry.h.dtype)


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
