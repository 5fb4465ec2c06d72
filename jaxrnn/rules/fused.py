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
functions beside its equations (see ``jaxrnn/cells/lstm.py``) and registers them as its
:class:`FusedGradient`. Its ``forward`` is the function its step wraps, so the
equations are written once and forward values are the step's exactly; its
``backward`` and ``param_grads`` are their derivative. ``tests/conformance``
holds the gradients to those of ``lax.scan`` of the step for every cell and
every option of :func:`jaxrnn.scan`.

**The input projection, a chunk at a time.** A cell may also split its step in
two (``project`` and ``forward_projected`` below): the part that reads only
``x`` (for the built-in LSTM, GRU and RNN ``X_t W_x``, normalised with layer
norm) and the recurrent remainder. The forward loop without a gradient
(``_scan``: inference) then runs over chunks of ``chunk`` steps (4): each
iteration projects its chunk's inputs with one ``(chunk·B, d) @ (d, G·h)``
matmul and runs the chunk's steps fully unrolled on static slices of it. A
remainder of ``T mod chunk`` steps runs as one more, shorter chunk outside
the loop. Values are the step's up to float32 rounding (the projection is
one matmul over more rows); ``tests/test_chunked.py`` holds them to
``lax.scan`` of the step.

Why chunks, and not the whole sequence at once: XLA:CPU hands each step's dot
to its matmul library together with the gate math that consumes it. Hoisting
the projection of all ``T`` steps out of the loop makes that one GEMM
efficient, but the gate math then reads slices of a large array and is no
longer fused into the dot: the LSTM forward ran at 0.5x (``benchmarks/README.md``).
Per chunk, with static slices, both hold. Measured on the project's 2-core
machine (T=128, d=h=256, float32, jitted, medians of 7 interleaved rounds,
chunk 8 against the step-by-step loop; the machine was shared, so a few
percent is noise): forward, LSTM 1.31x at B=32 (chunk 4: 1.34x, 16: 1.39x) and
1.00x at B=128; GRU 1.15x and 1.04x; RNN 1.05x and 1.04x.

Why 4 steps, not 8: every unrolled step is code that XLA compiles, and the
compile time grows with the chunk (LSTM forward at B=32, T=128, d=h=256: 0.10 s
stepwise, 0.19 s with chunks of 4, 0.29 s with 8; Flax's ``nn.RNN`` 0.17 s).
Chunks of 4 run as fast as chunks of 8 for the LSTM (time ratio 8/4 of
0.97-1.01 over B = 1, 32, 128) and the RNN (0.91-1.11), and cost the GRU
up to 5% at B = 32 and 128 (13% at B = 1, where it is 4x PyTorch).

The training forward (``_scan_fwd``, under a gradient) keeps the step-by-step
loop by default (``chunk_training``): chunked it measured no faster (LSTM
training 0.99x at B=32, 0.98x at B=128 with chunk 8; 0.94x-1.00x with 4 and
16), as the residuals it saves already keep the gate math out of the dot. The
backward loop has no input projection and is unchanged.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from jaxrnn import _sharding
from jaxrnn._chunks import scan_in_chunks
from jaxrnn._masking import masked_body, select, where
from jaxrnn._precision import like, matmul
from jaxrnn.rules.base import ScanRule


@dataclasses.dataclass(frozen=True)
class FusedGradient(ScanRule):
    """A cell's scan rule with a hand-written backward pass through time.

    Each function gets ``options``, the dict of array keyword arguments the step
    was given (e.g. ``{"recurrent_mask": m}``, names from ``step_options``),
    possibly empty.

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
        project: optional ``project(params, xs, options) -> gx``: the part of
            the step that reads only the input, for inputs ``xs (*lead, *batch,
            d)`` with any leading axes (a chunk of steps); ``gx`` is a pytree
            of arrays with those leading axes. ``None``: no chunking.
        forward_projected: with ``project``: ``forward_projected(params, carry,
            gx, options) -> (carry, y, residuals)``, the rest of the step, from
            one step's ``gx``; ``forward`` must equal it applied to
            ``project(params, x, options)``.
        chunk: steps per chunk of the forward loop when ``project`` is given
            (see the module's docstring); 1 turns chunking off.
        chunk_training: whether the forward loop of training (under a gradient)
            runs chunk by chunk too. Off by default: it measured no faster.
        step_options: the step's keyword arguments these functions handle:
            ``recurrent_mask`` (``H_{t-1}`` times a mask where it enters the
            recurrent matmul, whose derivative :func:`masked_input` and
            :func:`masked_inputs` give) by default.
        transposed: names of 2-D weights in ``params`` that ``backward`` multiplies
            by their transposes (``dh @ w_h.T``). They are transposed once before
            the backward loop, so each step's matmul reads the weight in the
            layout XLA:CPU's matmul is fastest with (the LSTM's backward step dot
            took 7.4 instead of 9.0 ms per call in the char LM's training step;
            the GRU's measured slower, so it does not ask for it). ``backward``
            still sees ``params`` as they are; a ``None`` entry is left alone.
    """

    forward: Callable[..., Any]
    backward: Callable[..., Any]
    param_grads: Callable[..., Any]
    project: Callable[..., Any] | None = None
    forward_projected: Callable[..., Any] | None = None
    chunk: int = 4
    chunk_training: bool = False
    step_options: tuple[str, ...] = ("recurrent_mask",)
    transposed: tuple[str, ...] = ()

    def __post_init__(self):
        if (self.project is None) != (self.forward_projected is None):
            raise ValueError(
                "FusedGradient: project and forward_projected go together: give both or neither"
            )
        if isinstance(self.chunk, bool) or not isinstance(self.chunk, int) or self.chunk < 1:
            raise ValueError(f"FusedGradient.chunk: expected a positive int, got {self.chunk!r}")
        if not isinstance(self.transposed, tuple) or not all(
            isinstance(name, str) for name in self.transposed
        ):
            raise TypeError(
                "FusedGradient.transposed: expected a tuple of parameter names, got "
                f"{self.transposed!r}"
            )

    def __call__(
        self, params, carry, carry0, xs, keep, reset, *, reverse, unroll, options, axis_name=None
    ):
        """``(carry, ys)`` of the masked scan (:class:`ScanRule`), with this gradient."""
        del axis_name  # no time sharding: jaxrnn.scan gives none
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
    return jnp.tensordot(a, b, axes=(rows, rows), **_sharding.contracted(a, b))


def sum_rows(a):
    """``a (T, *batch, n)`` summed over all steps and sequences: ``(n,)``."""
    return a.sum(tuple(range(a.ndim - 1)))


def input_grads(w_x, xs, dgs):
    """Gradients of ``xs @ w_x + b`` given ``dgs``, as one matmul each: (dw_x, db, dxs)."""
    return contract(xs, dgs), sum_rows(dgs), matmul(dgs, w_x.T)


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


def _forward_loop(
    rule, reverse, unroll, params, carry, carry0, xs, keep, reset, options, *, emit, chunked
):
    """The masked forward loop: ``(final, (ys, aux))``, ``aux`` stacked over time.

    ``emit(carry_in, residuals)`` is what each step adds to ``aux``. With
    ``chunked``, a rule with ``project`` runs chunk by chunk (:func:`_chunked_loop`);
    otherwise the loop is ``lax.scan`` of its ``forward``.
    """
    length = xs.shape[0]
    if not chunked or rule.project is None or rule.chunk == 1 or length == 0:

        def step(carry_in, x):
            new, y, residuals = rule.forward(params, carry_in, x, options)
            return new, y, emit(carry_in, residuals)

        body = masked_body(step, carry0)
        return lax.scan(body, carry, (xs, keep, reset), reverse=reverse, unroll=unroll)

    def step(carry_in, gx):
        new, y, residuals = rule.forward_projected(params, carry_in, gx, options)
        return new, y, emit(carry_in, residuals)

    project = lambda xs: rule.project(params, xs, options)
    return _chunked_loop(
        project, masked_body(step, carry0), carry, (xs, keep, reset), rule.chunk, reverse, unroll
    )


def _chunked_loop(project, body, carry, inputs, k, reverse, unroll):
    """``lax.scan(body, carry, inputs)`` with ``body`` on projected inputs, ``k`` steps at a time.

    ``inputs = (xs, keep, reset)`` on a leading time axis; ``body(carry, (gx, keep,
    reset))`` runs one step from that step's slice of ``project(xs)``. Each chunk
    projects its inputs at once and runs its steps unrolled, on static slices
    (:func:`jaxrnn._chunks.scan_in_chunks`). ``unroll`` counts steps: the loop over
    chunks unrolls ``unroll // k`` of them (``True``: all).
    """

    def run_chunk(carry, chunk):
        xs, keep, reset = chunk
        gxs = project(xs)
        outs = [None] * xs.shape[0]
        for t in reversed(range(xs.shape[0])) if reverse else range(xs.shape[0]):
            at_t = jax.tree.map(lambda a, t=t: a[t], (gxs, keep, reset))
            carry, outs[t] = body(carry, at_t)
        return carry, jax.tree.map(lambda *a: jnp.stack(a), *outs)

    chunks_unroll = unroll if isinstance(unroll, bool) else max(1, unroll // k)
    return scan_in_chunks(run_chunk, carry, inputs, k, reverse=reverse, unroll=chunks_unroll)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def _scan(rule, reverse, unroll, params, carry, carry0, xs, keep, reset, options):
    # Without a gradient the residuals are dead code, which XLA removes.
    final, (ys, _) = _forward_loop(
        rule, reverse, unroll, params, carry, carry0, xs, keep, reset, options,
        emit=lambda carry_in, residuals: None, chunked=True,
    )  # fmt: skip
    return final, ys


def _scan_fwd(rule, reverse, unroll, params, carry, carry0, xs, keep, reset, options):
    final, (ys, (carries_in, residuals)) = _forward_loop(
        rule, reverse, unroll, params, carry, carry0, xs, keep, reset, options,
        emit=lambda carry_in, residuals: (carry_in, residuals), chunked=rule.chunk_training,
    )  # fmt: skip
    return (final, ys), (params, carry0, xs, keep, reset, options, carries_in, residuals)


def _scan_bwd(rule, reverse, unroll, saved, cotangents):
    params, carry0, xs, keep, reset, options, carries_in, residuals = saved
    d_final, dys = cotangents

    # The weights the backward multiplies by their transposes, transposed once here:
    # inside the loop each step's matmul then reads them in the layout it is fastest with.
    flipped = {name: _transposed(getattr(params, name)) for name in rule.transposed}

    def body(acc, inputs):
        d_carry, d_carry0, d_options = acc
        dy, carry_in, res, keep, reset = inputs
        at_step = params
        if flipped:  # the transposes of the transposed weights, which the dots fold away
            at_step = dataclasses.replace(params, **{n: _transposed(w) for n, w in flipped.items()})
        if keep is not None:
            # new = keep ? cell's carry : carry_in, y = keep ? cell's y : 0.
            d_skip = select(keep, _zeros(d_carry), d_carry)
            d_carry = select(keep, d_carry, _zeros(d_carry))
            dy = where(keep, dy, jnp.zeros_like(dy))
        d_carry, dg, d_opts = rule.backward(at_step, res, carry_in, d_carry, dy, options)
        d_carry = like(d_carry, carry_in)  # a step computes in float32 or wider
        d_options = _add(d_options, like(d_opts, d_options))
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
    d_params, dxs = like(d_params, params), dxs.astype(xs.dtype)  # bfloat16 params, say
    return d_params, d_carry, d_carry0, dxs, None, None, d_options


def _transposed(w):
    return w if w is None else w.T


_scan.defvjp(_scan_fwd, _scan_bwd)
