"""The RG-LRU (De et al. 2024, "Griffin"): the gated linear recurrence of Hawk and
RecurrentGemma."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxrnn import _checks, _initializers, _rglru
from jaxrnn._cell import Cell, register_cell
from jaxrnn._params import SIZES, ProjectedInput, bias, pytree_dataclass, static
from jaxrnn.rules.linear import LinearRecurrence
from jaxrnn.rules.segments import SegmentState


@pytree_dataclass
class RGLRUParams(ProjectedInput):
    """Parameters of an RG-LRU cell (RecurrentGemma's ``RGLRU`` layer, real form).

    ``n`` is the number of heads, ``k = h / n`` the width of one.

    Attributes:
        w_a: the recurrence gate's block-diagonal weights ``(n, k, k)`` (RecurrentGemma's
            ``a_gate.w``); head ``j`` maps features ``j*k:(j+1)*k`` to the same ones.
        b_a: its bias ``(h,)`` (``a_gate.b``, flattened).
        w_i: the input gate's block-diagonal weights ``(n, k, k)`` (``input_gate.w``).
        b_i: its bias ``(h,)`` (``input_gate.b``, flattened).
        lam: ``Λ (h,)``, the base decay ``exp(-softplus(Λ))`` (``a_param``).
        w_in: with an input projection: ``(d, h)``, else ``None`` (``d = h``).
        b_in: with an input projection: its bias ``(h,)``, else ``None``.
        c: the constant ``c`` of ``log a = -c r softplus(Λ)``, static.
    """

    w_a: jax.Array
    b_a: jax.Array
    w_i: jax.Array
    b_i: jax.Array
    lam: jax.Array
    w_in: jax.Array | None = None
    b_in: jax.Array | None = None
    c: float = static(8.0)

    def __post_init__(self):
        _checks.finite_number(self.c, "c")

    @property
    def hidden_size(self) -> int:
        """``h``, the size of the state and the output."""
        return self.lam.shape[-1]

    def check(self):
        """Checks the fields against each other (at trace time, naming the field)."""
        ranks = {"w_a": 3, "b_a": 1, "w_i": 3, "b_i": 1, "lam": 1}
        ranks |= self.projection_ranks()
        _checks.check_params(self, ranks, self._shapes)

    def _shapes(self):
        h, (n, k) = self.hidden_size, self.w_a.shape[:2]
        if n * k != h:
            raise ValueError(
                f"params.w_a: expected (num_heads, h / num_heads, h / num_heads) blocks for "
                f"h={h}, got shape {tuple(self.w_a.shape)}"
            )
        shapes = {"w_a": (n, k, k), "w_i": (n, k, k), "b_a": (h,), "b_i": (h,)}
        return shapes | (
            {"w_in": (self.input_size, h), "b_in": (h,)} if self.w_in is not None else {}
        )

    def check_step(self, carry, x):
        """Checks params, ``carry`` (a ``SegmentState``) and ``x``; returns ``x``."""
        self.check()
        if not isinstance(carry, SegmentState):
            got = f"an array of shape {carry.shape}" if hasattr(carry, "shape") else type(carry)
            raise TypeError(
                f"carry: expected a jaxrnn.rules.SegmentState(h, started), got {got}; "
                "see jaxrnn.initial_carry"
            )
        x = _checks.check_step_args(
            x, {"carry.h": carry.h}, self.input_size, self.hidden_size, self.lam.dtype
        )
        _checks.check_shape(carry.started, x.shape[:-1], "carry.started", "x's batch shape")
        _checks.check_carry_dtype(carry.started, self.lam.dtype, "carry.started")
        return x


def rglru_init(
    key,
    input_size: int,
    hidden_size: int,
    *,
    num_heads: int = 1,
    c: float = 8.0,
    min_rad: float = 0.9,
    max_rad: float = 0.999,
    input_projection: bool | None = None,
    dtype=jnp.float32,
):
    """Initialises an RG-LRU cell as RecurrentGemma initialises its ``RGLRU`` layer.

    ``Λ`` is drawn so that the square of the base decay ``exp(-softplus(Λ))`` is
    uniform in ``[min_rad², max_rad²]`` (uniform over the area of that ring); the
    gates' blocks are normal with variance ``1/h`` (RecurrentGemma's fan-in of a
    block-diagonal layer), their biases zero. The layer maps ``h`` features to
    ``h``: with ``input_size != hidden_size`` (a stack's upper layers, a
    bidirectional one's inputs) a projection ``w_in (d, h)`` (LeCun normal) and
    ``b_in`` (zero) come first.

    Args:
        key: a PRNG key.
        input_size, hidden_size: ``d`` and ``h``.
        num_heads: the number of diagonal blocks ``n`` of the gates; it divides ``h``.
        c: the constant of the decay, ``log a = -c r softplus(Λ)``.
        min_rad, max_rad: the ring of the base decay, ``0 < min_rad < max_rad < 1``.
        input_projection: ``None`` (default): a projection exactly when ``d != h``;
            ``True`` also when they are equal; ``False`` refuses ``d != h``.
        dtype: the params' floating-point dtype.

    Example:
        >>> import jax, jaxrnn
        >>> p = jaxrnn.rglru_init(jax.random.key(0), 8, 8, num_heads=2)
        >>> p.w_a.shape, p.lam.shape, p.w_in
        ((2, 4, 4), (8,), None)
    """
    _initializers.check_sizes(key, input_size, hidden_size)
    dtype = _checks.float_dtype(dtype)
    _rglru.check_options(hidden_size, num_heads, c, min_rad, max_rad)
    if input_projection is None:
        input_projection = input_size != hidden_size
    elif not _checks.boolean(input_projection, "input_projection") and input_size != hidden_size:
        raise ValueError(
            f"input_projection: expected True or None for input_size={input_size} != "
            f"hidden_size={hidden_size} (the recurrence maps h features to h), got False"
        )
    k_gates, k_in = jax.random.split(key)
    gates = _rglru.init_gates(k_gates, hidden_size, num_heads, min_rad, max_rad, dtype)
    w_in = b_in = None
    if input_projection:
        w_in = _initializers.input_weights(k_in, input_size, hidden_size, 1, dtype)
        b_in = jnp.zeros((hidden_size,), dtype)
    return RGLRUParams(**gates, w_in=w_in, b_in=b_in, c=c)


def rglru_step(params: RGLRUParams, carry: SegmentState, x: jax.Array):
    r"""One step of the RG-LRU.

    .. math::
        U_t &= X_t \quad (\text{or } X_t W_x + b_in \text{ with a projection}) \\
        r_t &= \sigma(U_t W_a + b_a), \qquad i_t = \sigma(U_t W_i + b_i) \\
        \log a_t &= -c \, r_t \odot \operatorname{softplus}(\Lambda) \\
        H_t &= a_t \odot H_{t-1} + \sqrt{1 - a_t^2} \odot (i_t \odot U_t)

    ``W_a`` and ``W_i`` are block-diagonal (``num_heads`` blocks). The first step
    of a segment (``carry.started == 0``: the zero carry, or after a reset) is
    ``H_t = i_t ⊙ U_t``, as RecurrentGemma computes a step with ``segment_pos ==
    0`` (``a_t = 0`` and no ``sqrt(1 - a_t²)``); see
    :class:`jaxrnn.rules.SegmentState`. The derivative of the square root is
    bounded by 1000, as RecurrentGemma bounds it: near
    ``a_t = 1`` the true one grows without bound.

    Every coefficient is known from the input, so :func:`jaxrnn.scan` solves the
    recurrence in parallel over time (:class:`jaxrnn.LinearRecurrence`, which
    also shards the time axis); this step is its definition.

    Args:
        params: an :class:`RGLRUParams`.
        carry: a :class:`jaxrnn.rules.SegmentState`: ``h (*batch, h)`` and
            ``started (*batch,)``.
        x: ``X_t``, shape ``(*batch, d)``.

    Returns:
        ``(SegmentState(H_t, 1), H_t)``. The gates are computed in at least float32
        (bfloat16 params accumulate in float32), the update cast to the carry's dtype.

    Example:
        >>> import jax, jax.numpy as jnp, jaxrnn
        >>> p = jaxrnn.rglru_init(jax.random.key(0), 4, 4)
        >>> carry = jaxrnn.initial_carry(p, (2,))
        >>> carry, y = jaxrnn.rglru_step(p, carry, jnp.ones((2, 4)))
        >>> y.shape, carry.started.tolist()
        ((2, 4), [1.0, 1.0])
    """
    _checks.params_type(params, RGLRUParams, "rglru_step")
    x = params.check_step(carry, x)
    a, b = rglru_coefficients(params, x, carry.started)
    h = (a * carry.h.astype(a.dtype) + b).astype(carry.h.dtype)
    return SegmentState(h, jnp.ones_like(carry.started)), h


def rglru_coefficients(params: RGLRUParams, x: jax.Array, started: jax.Array):
    """``(A, B)`` of ``H_t = A ⊙ H_{t-1} + B`` for inputs ``x (..., d)``, flags ``started (...)``.

    The step applies them to one input, :func:`jaxrnn.scan` to all steps at
    once; the gates themselves are written once in the core, shared with
    Griffin's recurrent block (:func:`jaxrnn.hawk_step`).
    """
    params.check()
    working = jnp.promote_types(params.lam.dtype, jnp.float32)
    u = x.astype(working)
    if params.w_in is not None:
        u = jnp.matmul(x, params.w_in, preferred_element_type=working)
        u = u + bias(params.b_in.astype(working), u)
    p = params
    return _rglru.rglru_gates(u, p.w_a, p.b_a, p.w_i, p.b_i, p.lam, p.c, started)


def rglru_zeros(params: RGLRUParams, batch_shape=()):
    """The zero :class:`jaxrnn.rules.SegmentState`: a segment's start, from ``H = 0``."""
    batch = _checks.batch_tuple(batch_shape)
    dtype = params.lam.dtype
    return SegmentState(jnp.zeros((*batch, params.hidden_size), dtype), jnp.zeros(batch, dtype))


_RULE = LinearRecurrence(rglru_coefficients, segments=True)
RGLRU = register_cell(
    Cell("rglru", rglru_init, rglru_step, RGLRUParams, rglru_zeros, _RULE, hidden="h", **SIZES)
)
