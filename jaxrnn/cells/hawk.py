"""Griffin's recurrent block (De et al. 2024), the temporal block of Hawk, as one cell."""

from __future__ import annotations

import dataclasses
from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp

from jaxrnn import _checks, _initializers, _rglru
from jaxrnn._cell import Cell, register_cell
from jaxrnn._masking import where
from jaxrnn._params import SIZES, bias, pytree_dataclass, static
from jaxrnn.rules.base import ScanRule
from jaxrnn.rules.linear import linear_scan
from jaxrnn.rules.segments import segment_flags
from jaxrnn.rules.windows import run_order, take, windows


class HawkState(NamedTuple):
    """The carry of :func:`jaxrnn.hawk_step`."""

    y: jax.Array  # the last output (*batch, h)
    window: jax.Array  # the convolution's last K - 1 inputs (*batch, K - 1, L), oldest first
    h: jax.Array  # the RG-LRU's state (*batch, L)
    started: jax.Array  # (*batch,), 0 at a segment's start, 1 inside one


@pytree_dataclass
class HawkParams:
    """Parameters of Griffin's recurrent block. ``L`` is the recurrence's width
    (RecurrentGemma's ``lru_width``), ``K`` the convolution's temporal width.

    Attributes:
        w_y, b_y: the GeLU branch ``(d, L)``, ``(L,)`` (``linear_y``'s kernel and bias).
        w_x, b_x: the recurrent branch's input ``(d, L)``, ``(L,)`` (``linear_x``).
        w_conv, b_conv: the depthwise causal convolution ``(K, L)``, ``(L,)``
            (``conv_1d.w``, ``conv_1d.b``); row ``K - 1`` weighs the current input.
        w_a, b_a, w_i, b_i, lam: the RG-LRU over ``L`` (see :class:`jaxrnn.RGLRUParams`).
        w_out, b_out: the output ``(L, h)``, ``(h,)`` (``linear_out``).
        c: the RG-LRU's constant, static.
    """

    w_y: jax.Array
    b_y: jax.Array
    w_x: jax.Array
    b_x: jax.Array
    w_conv: jax.Array
    b_conv: jax.Array
    w_a: jax.Array
    b_a: jax.Array
    w_i: jax.Array
    b_i: jax.Array
    lam: jax.Array
    w_out: jax.Array
    b_out: jax.Array
    c: float = static(8.0)

    @property
    def input_size(self) -> int:
        """``d``."""
        return self.w_x.shape[-2]

    @property
    def output_size(self) -> int:
        """``h``."""
        return self.w_out.shape[-1]

    @property
    def lru_width(self) -> int:
        """``L``."""
        return self.lam.shape[-1]

    def check(self):
        """Checks the fields against each other (at trace time, naming the field)."""
        ranks = dict.fromkeys(("w_y", "w_x", "w_conv", "w_out"), 2)
        ranks |= dict.fromkeys(("b_y", "b_x", "b_conv", "b_a", "b_i", "lam", "b_out"), 1)
        ranks |= {"w_a": 3, "w_i": 3}
        _checks.check_params(self, ranks, self._shapes)

    def _shapes(self):
        d, width, h, (n, k) = self.input_size, self.lru_width, self.output_size, self.w_a.shape[:2]
        if n * k != width:
            raise ValueError(
                f"params.w_a: expected (num_heads, L / num_heads, L / num_heads) blocks for "
                f"L={width}, got shape {tuple(self.w_a.shape)}"
            )
        shapes = dict.fromkeys(("w_y", "w_x"), (d, width)) | {"w_out": (width, h), "b_out": (h,)}
        shapes |= dict.fromkeys(("b_y", "b_x", "b_conv", "b_a", "b_i"), (width,))
        return (
            shapes
            | dict.fromkeys(("w_a", "w_i"), (n, k, k))
            | {"w_conv": (len(self.w_conv), width)}
        )

    def check_step(self, carry, x):
        """Checks params, ``carry`` (a :class:`HawkState`) and ``x``; returns ``x``."""
        self.check()
        if not isinstance(carry, HawkState):
            got = f"an array of shape {carry.shape}" if hasattr(carry, "shape") else type(carry)
            raise TypeError(f"carry: expected a HawkState, got {got}; see jaxrnn.initial_carry")
        sizes = {"carry.y": self.output_size, "carry.h": self.lru_width}
        arrays = {"carry.y": carry.y, "carry.h": carry.h}
        x = _checks.check_step_args(x, arrays, self.input_size, sizes, self.lam.dtype)
        taps = (*x.shape[:-1], self.w_conv.shape[0] - 1, self.lru_width)
        _checks.check_shape(carry.window, taps, "carry.window", "x's batch shape + (K - 1, L)")
        _checks.check_shape(carry.started, x.shape[:-1], "carry.started", "x's batch shape")
        for name in ("window", "started"):
            _checks.check_carry_dtype(getattr(carry, name), self.lam.dtype, f"carry.{name}")
        return x


def hawk_init(
    key,
    input_size: int,
    hidden_size: int,
    *,
    lru_width: int | None = None,
    num_heads: int = 1,
    conv_width: int = 4,
    c: float = 8.0,
    min_rad: float = 0.9,
    max_rad: float = 0.999,
    out_scale: float = 1.0,
    dtype=jnp.float32,
):
    """Initialises Griffin's recurrent block as RecurrentGemma's ``RecurrentBlock``.

    ``linear_y`` and ``linear_x`` normal with variance ``1/d``, ``linear_out``
    with ``out_scale / L``, the convolution with ``0.01 / K``, biases zero; the
    RG-LRU as :func:`jaxrnn.rglru_init`.

    Args:
        key: a PRNG key.
        input_size, hidden_size: ``d`` and ``h``, RecurrentGemma's ``width`` (both).
        lru_width: ``L``; ``None``: ``h``.
        num_heads: the RG-LRU's diagonal blocks; it divides ``L``.
        conv_width: ``K``, the convolution's temporal width (at least 1).
        c, min_rad, max_rad: the RG-LRU's (see :func:`jaxrnn.rglru_init`).
        out_scale: the variance scale of ``w_out`` (``final_w_init_variance_scale``).
        dtype: the params' floating-point dtype.

    Example:
        >>> import jax, jaxrnn
        >>> p = jaxrnn.hawk_init(jax.random.key(0), 8, 8, lru_width=12, num_heads=3)
        >>> p.w_x.shape, p.w_conv.shape, p.w_a.shape, p.w_out.shape
        ((8, 12), (4, 12), (3, 4, 4), (12, 8))
    """
    _initializers.check_sizes(key, input_size, hidden_size)
    dtype = _checks.float_dtype(dtype)
    width = hidden_size if lru_width is None else _checks.positive_int(lru_width, "lru_width")
    _checks.positive_int(conv_width, "conv_width")
    _checks.finite_number(out_scale, "out_scale")
    _rglru.check_options(width, num_heads, c, min_rad, max_rad)
    keys = jax.random.split(key, 5)
    working = jnp.promote_types(dtype, jnp.float32)
    normal = lambda key, shape, var: (jax.random.normal(key, shape, working) * var**0.5).astype(
        dtype
    )
    zeros = lambda n: jnp.zeros((n,), dtype)
    gates = _rglru.init_gates(keys[0], width, num_heads, min_rad, max_rad, dtype)
    return HawkParams(
        w_y=normal(keys[1], (input_size, width), 1 / input_size),
        b_y=zeros(width),
        w_x=normal(keys[2], (input_size, width), 1 / input_size),
        b_x=zeros(width),
        w_conv=normal(keys[3], (conv_width, width), 0.01 / conv_width),
        b_conv=zeros(width),
        **gates,
        w_out=normal(keys[4], (width, hidden_size), out_scale / width),
        b_out=zeros(hidden_size),
        c=c,
    )


def hawk_step(params: HawkParams, carry: HawkState, x: jax.Array):
    r"""One step of Griffin's recurrent block.

    .. math::
        G_t &= \operatorname{gelu}(X_t W_y + b_y), \qquad U_t = X_t W_x + b_x \\
        V_t &= \textstyle\sum_{k=0}^{K-1} U_{t-K+1+k} \odot W_{conv}[k] + b_{conv}
            \quad (\text{causal, depthwise; nothing from before a segment}) \\
        H_t &= \text{RG-LRU}(V_t, H_{t-1}) \quad (\text{see } \texttt{rglru\_step}) \\
        Y_t &= (H_t \odot G_t) W_{out} + b_{out}

    ``gelu`` is its tanh approximation (``jax.nn.gelu``, as RecurrentGemma). The
    carry holds the convolution's window of the last ``K - 1`` inputs ``U`` and
    the RG-LRU's state, so the block streams one token at a time; at a
    segment's start (``carry.started == 0``: the zero carry, or after a reset)
    the window is empty and the RG-LRU takes its first step, as RecurrentGemma
    treats ``segment_pos == 0``. :func:`jaxrnn.scan` runs the whole sequence in
    parallel: both projections and the convolution over all steps at once, then
    the RG-LRU's linear scan (``HawkScan``); this step is its definition.

    Args:
        params: a :class:`HawkParams`.
        carry: a :class:`HawkState`.
        x: ``X_t``, shape ``(*batch, d)``.

    Returns:
        ``(HawkState, Y_t)``, computed in at least float32, cast to the carry's dtype.

    Example:
        >>> import jax, jax.numpy as jnp, jaxrnn
        >>> p = jaxrnn.hawk_init(jax.random.key(0), 4, 6)
        >>> carry = jaxrnn.initial_carry(p, (2,))
        >>> carry, y = jaxrnn.hawk_step(p, carry, jnp.ones((2, 4)))
        >>> y.shape, carry.window.shape
        ((2, 6), (2, 3, 6))
    """
    _checks.params_type(params, HawkParams, "hawk_step")
    x = params.check_step(carry, x)
    gate, u = _branches(params, x)
    s = carry.started.astype(u.dtype)
    seen = carry.window.astype(u.dtype) * s[..., None, None]
    full = jnp.concatenate([seen, u[..., None, :]], axis=-2)
    a, b = _recurrence(params, _convolve(params, full), carry.started)
    h = a * carry.h.astype(a.dtype) + b
    y = _output(params, h, gate).astype(carry.y.dtype)
    dtype = carry.h.dtype
    window = full[..., 1:, :].astype(dtype)
    return HawkState(y, window, h.astype(dtype), jnp.ones_like(carry.started)), y


def _branches(params, x):
    """``(G, U)``: the GeLU gate and the convolution's input, in at least float32."""
    working = jnp.promote_types(params.lam.dtype, jnp.float32)

    def dense(w, b):
        out = jnp.matmul(x, w, preferred_element_type=working)
        return out + bias(b.astype(working), out)

    return jax.nn.gelu(dense(params.w_y, params.b_y)), dense(params.w_x, params.b_x)


def _convolve(params, full):
    """``Σ_k full[..., k, :] ⊙ w_conv[k] + b_conv`` for windows ``full (..., K, L)``."""
    w = bias(params.w_conv.astype(full.dtype), full)
    # A sum of K products, not a reduction over the window axis: XLA:CPU fuses the former
    # into one pass, and ran the latter 4x slower than the whole linear scan at T = 16384.
    out = sum(full[..., k, :] * w[..., k, :] for k in range(full.shape[-2]))
    return out + bias(params.b_conv.astype(out.dtype), out)


def _recurrence(params, v, started):
    p = params
    return _rglru.rglru_gates(v, p.w_a, p.b_a, p.w_i, p.b_i, p.lam, p.c, started)


def _output(params, h, gate):
    out = jnp.matmul(h * gate, params.w_out, preferred_element_type=h.dtype)
    return out + bias(params.b_out.astype(out.dtype), out)


@dataclasses.dataclass(frozen=True)
class HawkScan(ScanRule):
    """The block over a whole sequence at once: both projections and the convolution
    over all steps, the RG-LRU by :func:`jaxrnn.rules.linear_scan`.

    Each sequence's steps are put in run order (:func:`jaxrnn.rules.windows.run_order`:
    the recurrence's order, padding last), every step's window is computed from
    the inputs before it, the carry's window and the segments
    (:func:`jaxrnn.rules.windows.windows`), and the results go back to time order.
    ``keep`` must be one run of steps per sequence, as ``lengths`` make it.
    """

    time_sharding: ClassVar[bool] = False

    def __call__(
        self, params, carry, carry0, xs, keep, reset, *, reverse, unroll, options, axis_name=None
    ):
        del unroll, options, axis_name  # no loop; no step options; no time sharding
        length, batch = xs.shape[0], xs.shape[1:-1]
        if length == 0:
            return carry, jnp.zeros((0, *batch, params.output_size), carry.y.dtype)
        index, inverse, n = run_order(keep, length, batch, reverse)
        xs = take(xs, index)
        reset = None if reset is None else take(reset, index)
        ran = jnp.arange(length).reshape(-1, *(1,) * len(batch)) < n[None]
        gate, u = _branches(params, xs)
        seen = windows(u, reset, carry.window, carry.started, carry0.window, carry0.started)
        v = _convolve(params, jnp.concatenate([seen[:-1], u[..., None, :]], axis=-2))
        started, after = segment_flags(
            carry.started, carry0.started, ran, reset, length, reverse=False
        )
        a, b = _recurrence(params, v, started)
        h0 = carry0.h.astype(a.dtype)
        if reset is not None:  # the step from the initial carry
            b = b + where(reset, a * h0[None], jnp.zeros_like(b))
            a = where(reset, jnp.zeros_like(a), a)
        a = where(ran, a, jnp.ones_like(a))  # padding, last in run order: the identity
        b = where(ran, b, jnp.zeros_like(b))
        hs = linear_scan(a, b, carry.h.astype(a.dtype))
        ys = where(ran, _output(params, hs, gate), 0.0).astype(carry.y.dtype)
        last = jnp.maximum(n - 1, 0)[None]
        some = n > 0
        final = HawkState(
            y=where(some, take(ys, jnp.broadcast_to(last, (1, *batch)))[0], carry.y),
            window=where(some, take(seen, n[None])[0].astype(carry.window.dtype), carry.window),
            h=hs[-1].astype(carry.h.dtype),
            started=after,
        )
        return final, take(ys, inverse)


def hawk_zeros(params: HawkParams, batch_shape=()):
    """The zero :class:`HawkState`: a segment's start."""
    batch = _checks.batch_tuple(batch_shape)
    width, taps, dtype = params.lru_width, params.w_conv.shape[0] - 1, params.lam.dtype
    return HawkState(
        y=jnp.zeros((*batch, params.output_size), dtype),
        window=jnp.zeros((*batch, taps, width), dtype),
        h=jnp.zeros((*batch, width), dtype),
        started=jnp.zeros(batch, dtype),
    )


HAWK = register_cell(
    Cell("hawk", hawk_init, hawk_step, HawkParams, hawk_zeros, HawkScan(), hidden="y", **SIZES)
)
