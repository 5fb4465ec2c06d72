"""The RG-LRU's gates and initialisation, shared by the RG-LRU cell and Griffin's recurrent block.

Written once here (as per-gate layer norm is shared by the LSTM and the GRU):
:func:`rglru_gates` turns the recurrence's input into the coefficients of
``H_t = A_t ⊙ H_{t-1} + B_t``; :func:`init_gates` draws the gates and ``Λ`` as
RecurrentGemma does.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxrnn import _checks
from jaxrnn._params import bias

#: The bound on the derivative of the square root in ``sqrt(1 - a²)`` (as RecurrentGemma's).
MAX_SQRT_GRADIENT = 1000.0


def rglru_gates(u, w_a, b_a, w_i, b_i, lam, c, started):
    """``(A, B)`` of the RG-LRU for its input ``u (..., h)`` in the working dtype.

    ``r = σ(u W_a + b_a)``, ``i = σ(u W_i + b_i)`` (block-diagonal ``W``),
    ``log a = -c r softplus(Λ)``; inside a segment (``started = 1``) ``A = a``
    and ``B = sqrt(1 - a²) ⊙ i ⊙ u``, at its first step (``started = 0``)
    ``A = 0`` and ``B = i ⊙ u``. ``started (...)`` interpolates the two.
    """
    r = jax.nn.sigmoid(block_diagonal(u, w_a, b_a))
    i = jax.nn.sigmoid(block_diagonal(u, w_i, b_i))
    log_a = -c * r * bias(jax.nn.softplus(lam.astype(u.dtype)), r)
    # exp(2 log a) rather than a², as RecurrentGemma: the same value it rounds.
    a, a_squared = jnp.exp(log_a), jnp.exp(2 * log_a)
    s = started.astype(u.dtype)[..., None]
    scale = s * bounded_sqrt(1 - a_squared) + (1 - s)
    return a * s, scale * (i * u)


def block_diagonal(u, w, b):
    """``u (..., n*k)`` times the block-diagonal ``w (n, k, k)``, plus ``b (n*k,)``."""
    n, k = w.shape[:2]
    blocks = u.reshape(*u.shape[:-1], n, k)
    out = jnp.einsum("...ni,nij->...nj", blocks, w, preferred_element_type=u.dtype)
    out = out.reshape(u.shape)
    return out + bias(b.astype(u.dtype), out)


@jax.custom_vjp
def bounded_sqrt(x):
    """``sqrt(x)``, whose derivative is that at ``max(x, 1 / (4 MAX_SQRT_GRADIENT²))``."""
    return jnp.sqrt(x)


def _bounded_sqrt_fwd(x):
    return jnp.sqrt(x), x


def _bounded_sqrt_bwd(x, g):
    floor = 1 / (4 * MAX_SQRT_GRADIENT**2)
    return (g * 0.5 * jax.lax.rsqrt(jnp.maximum(x, floor)),)


bounded_sqrt.defvjp(_bounded_sqrt_fwd, _bounded_sqrt_bwd)


def check_options(width: int, num_heads: int, c: float, min_rad: float, max_rad: float):
    """Checks the RG-LRU's options; ``width`` is the recurrence's width."""
    _checks.positive_int(num_heads, "num_heads")
    if width % num_heads:
        raise ValueError(f"num_heads: expected a divisor of the width {width}, got {num_heads}")
    _checks.finite_number(c, "c")
    _checks.finite_number(min_rad, "min_rad")
    _checks.finite_number(max_rad, "max_rad")
    if not 0 < min_rad < max_rad < 1:
        raise ValueError(
            f"min_rad, max_rad: expected 0 < min_rad < max_rad < 1, got {min_rad}, {max_rad}"
        )


def init_gates(key, width: int, num_heads: int, min_rad: float, max_rad: float, dtype):
    """``dict(w_a, b_a, w_i, b_i, lam)`` as RecurrentGemma initialises its ``RGLRU``.

    Blocks ``(n, k, k)`` normal with variance ``1 / width`` (its fan-in of a
    block-diagonal layer), zero biases, and ``Λ`` such that the base decay
    ``exp(-softplus(Λ))`` has its square uniform on ``[min_rad², max_rad²]``.
    """
    k_a, k_i, k_lam = jax.random.split(key, 3)
    k, working = width // num_heads, jnp.promote_types(dtype, jnp.float32)
    gate = jax.nn.initializers.variance_scaling(1.0, "fan_in", "normal")
    blocks = lambda key: gate(key, (num_heads, k, k), working).astype(dtype)
    square = jax.random.uniform(k_lam, (width,), working, min_rad**2, max_rad**2)
    # softplus(Λ) = -log(base decay) = -log(square) / 2; Λ = softplus⁻¹ of it.
    lam = jnp.log(jnp.expm1(-0.5 * jnp.log(square))).astype(dtype)
    zeros = jnp.zeros((width,), dtype)
    return dict(w_a=blocks(k_a), b_a=zeros, w_i=blocks(k_i), b_i=zeros, lam=lam)
