"""The Linear Recurrent Unit (Orvieto et al. 2023): a complex diagonal linear recurrence."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax import lax

from jaxrnn import _checks, _initializers
from jaxrnn._cell import Cell, register_cell
from jaxrnn._params import SIZES, ProjectedInput, bias, pytree_dataclass
from jaxrnn.rules.linear import LinearRecurrence
from jaxrnn.rules.readout import ReadoutState, carried_state, working_state


@pytree_dataclass
class LRUParams(ProjectedInput):
    """Parameters of an LRU cell; ``N`` is the state size (complex numbers).

    The complex matrices are kept as real and imaginary parts, right-multiplied
    as the other cells' weights (the paper's ``B (N, H)`` is ``(b_re + i b_im).T``).

    Attributes:
        nu_log, theta_log: ``(N,)``, ``λ = exp(-exp(nu_log) + i exp(theta_log))``.
        gamma_log: ``(N,)``, the input normalisation ``exp(gamma_log)``.
        b_re, b_im: ``(h, N)``, the input matrix ``B``.
        c_re, c_im: ``(N, h)``, the output matrix ``C``.
        d: ``(h,)``, the skip connection ``D``.
        w_in: with an input projection: ``(d, h)``, else ``None`` (``d = h``).
        b_in: with an input projection: its bias ``(h,)``, else ``None``.
    """

    nu_log: jax.Array
    theta_log: jax.Array
    gamma_log: jax.Array
    b_re: jax.Array
    b_im: jax.Array
    c_re: jax.Array
    c_im: jax.Array
    d: jax.Array
    w_in: jax.Array | None = None
    b_in: jax.Array | None = None

    @property
    def hidden_size(self) -> int:
        """``h``, the features of the output."""
        return self.d.shape[-1]

    @property
    def state_size(self) -> int:
        """``N``."""
        return self.nu_log.shape[-1]

    def check(self):
        """Checks the fields against each other (at trace time, naming the field)."""
        ranks = dict.fromkeys(("nu_log", "theta_log", "gamma_log", "d"), 1)
        ranks |= dict.fromkeys(("b_re", "b_im", "c_re", "c_im"), 2)
        ranks |= self.projection_ranks()
        _checks.check_params(self, ranks, self._shapes)

    def _shapes(self):
        h, n = self.hidden_size, self.state_size
        shapes = dict.fromkeys(("nu_log", "theta_log", "gamma_log"), (n,))
        shapes |= dict.fromkeys(("b_re", "b_im"), (h, n)) | dict.fromkeys(("c_re", "c_im"), (n, h))
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
        state = (*x.shape[:-1], 2 * self.state_size)
        _checks.check_shape(carry.s, state, "carry.s", "x's batch shape + (2 * state_size,)")
        _checks.check_carry_dtype(carry.s, self.d.dtype, "carry.s")
        return x


def lru_init(
    key,
    input_size: int,
    hidden_size: int,
    *,
    state_size: int | None = None,
    r_min: float = 0.9,
    r_max: float = 0.999,
    max_phase: float = math.pi / 10,
    input_projection: bool | None = None,
    dtype=jnp.float32,
):
    """Initialises an LRU cell as the paper does (Orvieto et al. 2023, section 3 and appendix).

    ``|λ|²`` is uniform on ``[r_min², r_max²]`` (uniform over the area of the
    ring), the phase ``arg λ`` uniform on ``[0, max_phase]``, ``γ = sqrt(1 - |λ|²)``
    (so that the state's variance does not grow with ``|λ| -> 1``); ``B``'s real
    and imaginary parts are normal with variance ``1 / (2h)``, ``C``'s with ``1 / N``,
    ``D`` standard normal. With ``input_size != hidden_size`` a projection ``w_in
    (d, h)`` (LeCun normal) and ``b_in`` (zero) come first.

    Args:
        key: a PRNG key.
        input_size, hidden_size: ``d`` and ``h``.
        state_size: ``N``; ``None``: ``h``.
        r_min, r_max: the ring of ``|λ|``, ``0 <= r_min < r_max < 1``.
        max_phase: the largest initial phase of ``λ``.
        input_projection: ``None``: a projection exactly when ``d != h``; ``True``
            also when they are equal; ``False`` refuses ``d != h``.
        dtype: the params' floating-point dtype.

    Example:
        >>> import jax, jaxrnn
        >>> p = jaxrnn.lru_init(jax.random.key(0), 8, 8, state_size=16)
        >>> p.b_re.shape, p.c_im.shape, p.nu_log.shape
        ((8, 16), (16, 8), (16,))
    """
    _initializers.check_sizes(key, input_size, hidden_size)
    dtype = _checks.float_dtype(dtype)
    n = hidden_size if state_size is None else _checks.positive_int(state_size, "state_size")
    for name, value in (("r_min", r_min), ("r_max", r_max), ("max_phase", max_phase)):
        _checks.finite_number(value, name)
    if not 0 <= r_min < r_max < 1:
        raise ValueError(f"r_min, r_max: expected 0 <= r_min < r_max < 1, got {r_min}, {r_max}")
    if max_phase <= 0:
        raise ValueError(f"max_phase: expected a number above 0, got {max_phase}")
    projection = input_projection
    if projection is None:
        projection = input_size != hidden_size
    elif not _checks.boolean(projection, "input_projection") and input_size != hidden_size:
        raise ValueError(
            f"input_projection: expected True or None for input_size={input_size} != "
            f"hidden_size={hidden_size} (the layer maps h features to h), got False"
        )
    h, working = hidden_size, jnp.promote_types(dtype, jnp.float32)
    keys = jax.random.split(key, 8)
    radius2 = jax.random.uniform(keys[0], (n,), working, r_min**2, r_max**2)
    nu_log = jnp.log(-0.5 * jnp.log(radius2))  # |λ| = exp(-exp(nu_log))
    theta_log = jnp.log(jax.random.uniform(keys[1], (n,), working, 0.0, 1.0) * max_phase)
    gamma_log = 0.5 * jnp.log1p(-radius2)
    normal = lambda key, shape, var: jax.random.normal(key, shape, working) * math.sqrt(var)
    arrays = (
        nu_log,
        theta_log,
        gamma_log,
        normal(keys[2], (h, n), 1 / (2 * h)),
        normal(keys[3], (h, n), 1 / (2 * h)),
        normal(keys[4], (n, h), 1 / n),
        normal(keys[5], (n, h), 1 / n),
        normal(keys[6], (h,), 1.0),
    )
    w_in = b_in = None
    if projection:
        w_in = _initializers.input_weights(keys[7], input_size, h, 1, dtype)
        b_in = jnp.zeros((h,), dtype)
    return LRUParams(*(a.astype(dtype) for a in arrays), w_in, b_in)


def lru_step(params: LRUParams, carry: ReadoutState, x: jax.Array):
    r"""One step of the LRU.

    .. math::
        U_t &= X_t \quad (\text{or } X_t W_{in} + b_{in} \text{ with a projection}) \\
        \lambda &= \exp(-\exp(\nu) + i \exp(\theta)) \\
        S_t &= \lambda \odot S_{t-1} + \exp(\gamma) \odot (U_t B) \\
        Y_t &= \operatorname{Re}(S_t C) + D \odot U_t

    ``S_t`` is complex, ``(*batch, N)``; the carry holds it as its real and
    imaginary parts side by side, ``s = [Re S, Im S]`` ``(*batch, 2N)`` in the
    params' dtype, so that a carry is real as every other cell's (bfloat16 params
    give a bfloat16 carry, where no complex bfloat16 exists) and the generic
    machinery (masks, resets, checkpoints) needs no complex case. The step and
    the scan compute in complex64 (complex128 for float64 params); the parallel
    scan (:class:`jaxrnn.LinearRecurrence` with a complex state) multiplies the
    complex coefficients as they are, gradients included.

    Args:
        params: an :class:`LRUParams`.
        carry: a :class:`jaxrnn.rules.ReadoutState`: ``y (*batch, h)``, the last
            output, and ``s (*batch, 2N)``, the state's real and imaginary parts.
        x: ``X_t``, shape ``(*batch, d)``.

    Returns:
        ``(ReadoutState(Y_t, [Re S_t, Im S_t]), Y_t)``, cast to the carry's dtype.

    Example:
        >>> import jax, jax.numpy as jnp, jaxrnn
        >>> p = jaxrnn.lru_init(jax.random.key(0), 4, 4, state_size=3)
        >>> carry = jaxrnn.initial_carry(p, (2,))
        >>> carry, y = jaxrnn.lru_step(p, carry, jnp.ones((2, 4)))
        >>> y.shape, carry.s.shape
        ((2, 4), (2, 6))
    """
    _checks.params_type(params, LRUParams, "lru_step")
    x = params.check_step(carry, x)
    a, b = lru_coefficients(params, x)
    s = a * working_state(carry.s, a.dtype, True) + b
    y = lru_readout(params, x, s).astype(carry.y.dtype)
    return ReadoutState(y, carried_state(s, carry.s.dtype, True)), y


def _input(params, x):
    working = jnp.promote_types(params.d.dtype, jnp.float32)
    if params.w_in is None:
        return x.astype(working)
    u = jnp.matmul(x, params.w_in, preferred_element_type=working)
    return u + bias(params.b_in.astype(working), u)


def lru_coefficients(params: LRUParams, x: jax.Array):
    """``(λ, exp(γ) ⊙ U B)``, complex, each ``(..., N)``, for ``x (..., d)``.

    With :func:`lru_readout`, the one place the LRU equations are written.
    """
    params.check()
    u = _input(params, x)
    real = lambda w: jnp.matmul(u, w, preferred_element_type=u.dtype)
    gamma = bias(jnp.exp(params.gamma_log.astype(u.dtype)), u[..., :1])
    b = lax.complex(gamma * real(params.b_re), gamma * real(params.b_im))
    nu, theta = (jnp.exp(p.astype(u.dtype)) for p in (params.nu_log, params.theta_log))
    lam = jnp.exp(lax.complex(-nu, theta))
    # Broadcast by an addition, so that λ takes b's type (its sharding included).
    return bias(lam, b) + jnp.zeros_like(b), b


def lru_readout(params: LRUParams, x: jax.Array, s: jax.Array):
    """``Re(S C) + D ⊙ U`` for inputs ``x (..., d)`` and complex states ``s (..., N)``."""
    u = _input(params, x)
    real = lambda a, w: jnp.matmul(a, w.astype(u.dtype), preferred_element_type=u.dtype)
    y = real(jnp.real(s), params.c_re) - real(jnp.imag(s), params.c_im)
    return y + bias(params.d.astype(u.dtype), u) * u


def lru_zeros(params: LRUParams, batch_shape=()):
    """The zero :class:`jaxrnn.rules.ReadoutState`: ``y (*batch, h)``, ``s (*batch, 2N)``."""
    batch = _checks.batch_tuple(batch_shape)
    h, n, dtype = params.hidden_size, params.state_size, params.d.dtype
    return ReadoutState(jnp.zeros((*batch, h), dtype), jnp.zeros((*batch, 2 * n), dtype))


_RULE = LinearRecurrence(lru_coefficients, readout=lru_readout, complex_state=True)
LRU = register_cell(
    Cell("lru", lru_init, lru_step, LRUParams, lru_zeros, _RULE, hidden="y", **SIZES)
)
