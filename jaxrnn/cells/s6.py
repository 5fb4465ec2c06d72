"""S6, the selective state-space model of Mamba (Gu & Dao 2023): the SSM core without its block."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from jaxrnn import _checks, _initializers
from jaxrnn._cell import Cell, register_cell
from jaxrnn._params import SIZES, ProjectedInput, bias, pytree_dataclass
from jaxrnn.rules.linear import LinearRecurrence
from jaxrnn.rules.readout import ReadoutState


@pytree_dataclass
class S6Params(ProjectedInput):
    """Parameters of an S6 cell. ``R`` is ``dt_rank``, ``N`` the state size per channel.

    Attributes:
        w_x: ``(h, R + 2N)``, the input's map to the low-rank ``Δ``, ``B`` and ``C``, in
            that order (Mamba's ``x_proj.weight.T``).
        w_dt: ``(R, h)``, ``Δ``'s up-projection (``dt_proj.weight.T``).
        b_dt: ``(h,)``, its bias (``dt_proj.bias``).
        a_log: ``(h, N)``, ``A = -exp(a_log)`` (``A_log``).
        d: ``(h,)``, the skip connection ``D`` (``D``).
        w_in: with an input projection: ``(d, h)``, else ``None`` (``d = h``).
        b_in: with an input projection: its bias ``(h,)``, else ``None``.
    """

    w_x: jax.Array
    w_dt: jax.Array
    b_dt: jax.Array
    a_log: jax.Array
    d: jax.Array
    w_in: jax.Array | None = None
    b_in: jax.Array | None = None

    @property
    def hidden_size(self) -> int:
        """``h``, the channels of the output (each with a state of ``N``)."""
        return self.d.shape[-1]

    @property
    def state_size(self) -> int:
        """``N``."""
        return self.a_log.shape[-1]

    @property
    def dt_rank(self) -> int:
        """``R``."""
        return self.w_dt.shape[-2]

    def check(self):
        """Checks the fields against each other (at trace time, naming the field)."""
        ranks = {"w_x": 2, "w_dt": 2, "b_dt": 1, "a_log": 2, "d": 1}
        ranks |= self.projection_ranks()
        _checks.check_params(self, ranks, self._shapes)

    def _shapes(self):
        h, n, r = self.hidden_size, self.state_size, self.dt_rank
        shapes = {"w_x": (h, r + 2 * n), "w_dt": (r, h), "b_dt": (h,), "a_log": (h, n)}
        return shapes | (
            {"w_in": (self.input_size, h), "b_in": (h,)} if self.w_in is not None else {}
        )

    def check_step(self, carry, x):
        """Checks params, ``carry`` (a ``ReadoutState``) and ``x``; returns ``x``."""
        self.check()
        if not isinstance(carry, ReadoutState):
            got = f"an array of shape {carry.shape}" if hasattr(carry, "shape") else type(carry)
            raise TypeError(
                f"carry: expected a jaxrnn.rules.ReadoutState(y, s), got {got}; "
                "see jaxrnn.initial_carry"
            )
        x = _checks.check_step_args(
            x, {"carry.y": carry.y}, self.input_size, self.hidden_size, self.d.dtype
        )
        state = (*x.shape[:-1], self.hidden_size, self.state_size)
        _checks.check_shape(carry.s, state, "carry.s", "x's batch shape + (h, state_size)")
        _checks.check_carry_dtype(carry.s, self.d.dtype, "carry.s")
        return x


def s6_init(
    key,
    input_size: int,
    hidden_size: int,
    *,
    state_size: int = 16,
    dt_rank: int | None = None,
    dt_min: float = 0.001,
    dt_max: float = 0.1,
    dt_floor: float = 1e-4,
    input_projection: bool | None = None,
    dtype=jnp.float32,
):
    """Initialises an S6 cell as Mamba initialises its SSM.

    ``A``: S4D-real, ``a_log[:, n] = log(n + 1)``. ``Δ``'s bias is the inverse
    softplus of a step drawn log-uniform in ``[dt_min, dt_max]`` (at least
    ``dt_floor``); ``w_dt`` uniform in ``±R^-1/2``; ``w_x`` uniform in ``±h^-1/2``
    (PyTorch's default for a linear layer, as Mamba leaves it); ``D = 1``. With
    ``input_size != hidden_size`` a projection ``w_in (d, h)`` (LeCun normal) and
    ``b_in`` (zero) come first.

    Args:
        key: a PRNG key.
        input_size, hidden_size: ``d`` and ``h`` (Mamba's ``d_inner``).
        state_size: ``N``, the state per channel.
        dt_rank: ``R``; ``None``: ``ceil(h / 16)``, as Mamba's ``"auto"``.
        dt_min, dt_max, dt_floor: the range of the initial step ``Δ``.
        input_projection: ``None``: a projection exactly when ``d != h``; ``True``
            also when they are equal; ``False`` refuses ``d != h``.
        dtype: the params' floating-point dtype.

    Example:
        >>> import jax, jaxrnn
        >>> p = jaxrnn.s6_init(jax.random.key(0), 32, 32, state_size=4)
        >>> p.w_x.shape, p.w_dt.shape, p.a_log.shape
        ((32, 10), (2, 32), (32, 4))
    """
    _initializers.check_sizes(key, input_size, hidden_size)
    dtype = _checks.float_dtype(dtype)
    _checks.positive_int(state_size, "state_size")
    dt_rank = math.ceil(hidden_size / 16) if dt_rank is None else dt_rank
    _checks.positive_int(dt_rank, "dt_rank")
    for name, value in (("dt_min", dt_min), ("dt_max", dt_max), ("dt_floor", dt_floor)):
        if _checks.finite_number(value, name) <= 0:
            raise ValueError(f"{name}: expected a number above 0, got {value!r}")
    if dt_min > dt_max:
        raise ValueError(f"dt_min, dt_max: expected dt_min <= dt_max, got {dt_min}, {dt_max}")
    projection = _projection(input_projection, input_size, hidden_size)
    k_x, k_w, k_b, k_in = jax.random.split(key, 4)
    h, working = hidden_size, jnp.promote_types(dtype, jnp.float32)
    uniform = lambda key, shape, limit: jax.random.uniform(key, shape, working, -limit, limit)
    w_x = uniform(k_x, (h, dt_rank + 2 * state_size), h**-0.5)
    w_dt = uniform(k_w, (dt_rank, h), dt_rank**-0.5)
    log_dt = jax.random.uniform(k_b, (h,), working, math.log(dt_min), math.log(dt_max))
    dt = jnp.maximum(jnp.exp(log_dt), dt_floor)
    b_dt = dt + jnp.log(-jnp.expm1(-dt))  # softplus(b_dt) = dt
    a_log = jnp.broadcast_to(jnp.log(jnp.arange(1, state_size + 1, dtype=working)), (h, state_size))
    w_in = b_in = None
    if projection:
        w_in = _initializers.input_weights(k_in, input_size, h, 1, dtype)
        b_in = jnp.zeros((h,), dtype)
    arrays = (w_x, w_dt, b_dt, a_log, jnp.ones((h,), working))
    return S6Params(*(a.astype(dtype) for a in arrays), w_in, b_in)


def _projection(wanted, input_size, hidden_size) -> bool:
    if wanted is None:
        return input_size != hidden_size
    if not _checks.boolean(wanted, "input_projection") and input_size != hidden_size:
        raise ValueError(
            f"input_projection: expected True or None for input_size={input_size} != "
            f"hidden_size={hidden_size} (the layer maps h features to h), got False"
        )
    return wanted


def s6_step(params: S6Params, carry: ReadoutState, x: jax.Array):
    r"""One step of S6, Mamba's selective SSM.

    .. math::
        U_t &= X_t \quad (\text{or } X_t W_{in} + b_{in} \text{ with a projection}) \\
        \Delta_t &= \operatorname{softplus}(U_t W_{x\Delta} W_{dt} + b_{dt}), \qquad
            B_t = U_t W_{xB}, \qquad C_t = U_t W_{xC} \\
        S_t &= \exp(\Delta_t A) \odot S_{t-1} + (\Delta_t \odot U_t) B_t^\top,
            \qquad A = -\exp(A_{\log}) \\
        Y_t &= S_t C_t + D \odot U_t

    per channel ``j`` of ``h``: ``S_t[j] (N)`` decays by ``exp(Δ_t[j] A[j])`` and
    takes ``Δ_t[j] U_t[j] B_t``; ``Y_t[j] = S_t[j] · C_t + D[j] U_t[j]``. ``Δ``,
    ``B``, ``C`` are read from the input ("selective"), so :func:`jaxrnn.scan`
    solves the recurrence in parallel (:class:`jaxrnn.LinearRecurrence` with a
    readout, over the ``(h, N)`` state); this step is its definition. The
    discretisation is Mamba's: zero-order hold for ``A``, Euler for ``B``.

    Args:
        params: an :class:`S6Params`.
        carry: a :class:`jaxrnn.rules.ReadoutState`: ``y (*batch, h)``, the last
            output, and ``s (*batch, h, N)``, the state.
        x: ``X_t``, shape ``(*batch, d)``.

    Returns:
        ``(ReadoutState(Y_t, S_t), Y_t)``, computed in at least float32 (bfloat16
        params accumulate in float32), cast to the carry's dtype.

    Example:
        >>> import jax, jax.numpy as jnp, jaxrnn
        >>> p = jaxrnn.s6_init(jax.random.key(0), 8, 8, state_size=4)
        >>> carry = jaxrnn.initial_carry(p, (2,))
        >>> carry, y = jaxrnn.s6_step(p, carry, jnp.ones((2, 8)))
        >>> y.shape, carry.s.shape
        ((2, 8), (2, 8, 4))
    """
    _checks.params_type(params, S6Params, "s6_step")
    x = params.check_step(carry, x)
    a, b = s6_coefficients(params, x)
    s = a * carry.s.astype(a.dtype) + b
    y = s6_readout(params, x, s).astype(carry.y.dtype)
    return ReadoutState(y, s.astype(carry.s.dtype)), y


def _inputs(params, x):
    """``U`` and the projection ``U W_x`` cut into ``(Δ low-rank, B, C)``, in at least float32."""
    working = jnp.promote_types(params.d.dtype, jnp.float32)
    u = x.astype(working)
    if params.w_in is not None:
        u = jnp.matmul(x, params.w_in, preferred_element_type=working)
        u = u + bias(params.b_in.astype(working), u)
    r, n = params.dt_rank, params.state_size
    proj = jnp.matmul(u, params.w_x, preferred_element_type=working)
    return u, jnp.split(proj, [r, r + n], axis=-1)


def s6_coefficients(params: S6Params, x: jax.Array):
    """``(A, B)`` of ``S_t = A ⊙ S_{t-1} + B``, each ``(..., h, N)``, for ``x (..., d)``.

    With :func:`s6_readout`, the one place the S6 equations are written.
    """
    params.check()
    u, (dt_low, b, _) = _inputs(params, x)
    dt = jnp.matmul(dt_low, params.w_dt, preferred_element_type=u.dtype)
    dt = jax.nn.softplus(dt + bias(params.b_dt.astype(u.dtype), dt))
    a = -jnp.exp(params.a_log.astype(u.dtype))
    decay = jnp.exp(dt[..., None] * bias(a, dt[..., None]))
    return decay, (dt * u)[..., None] * b[..., None, :]


def s6_readout(params: S6Params, x: jax.Array, s: jax.Array):
    """``Y = S C + D ⊙ U`` for inputs ``x (..., d)`` and states ``s (..., h, N)``."""
    u, (_, _, c) = _inputs(params, x)
    y = jnp.einsum("...jn,...n->...j", s.astype(u.dtype), c)
    return y + bias(params.d.astype(u.dtype), u) * u


def s6_zeros(params: S6Params, batch_shape=()):
    """The zero :class:`jaxrnn.rules.ReadoutState`: ``y (*batch, h)``, ``s (*batch, h, N)``."""
    batch = _checks.batch_tuple(batch_shape)
    h, n, dtype = params.hidden_size, params.state_size, params.d.dtype
    return ReadoutState(jnp.zeros((*batch, h), dtype), jnp.zeros((*batch, h, n), dtype))


_RULE = LinearRecurrence(s6_coefficients, readout=s6_readout)
S6 = register_cell(Cell("s6", s6_init, s6_step, S6Params, s6_zeros, _RULE, hidden="y", **SIZES))
