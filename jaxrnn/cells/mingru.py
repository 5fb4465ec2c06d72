"""minGRU (Feng et al. 2024): a GRU whose gates read only the input, trained in parallel."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxrnn import _checks
from jaxrnn._activations import positive
from jaxrnn._carry import zeros_hidden
from jaxrnn._cell import Cell, register_cell
from jaxrnn._params import SIZES, InputWeights, pytree_dataclass
from jaxrnn.rules.linear import LinearRecurrence, input_projection, linear_step


@pytree_dataclass
class MinGRUParams(InputWeights):
    """Parameters of a minGRU cell, gates fused along the last axis in the order z, candidate.

    Attributes:
        w_x: input weights, shape ``(d, 2h)``.
        b: bias, shape ``(2h,)``.
    """

    gates = 2

    w_x: jax.Array
    b: jax.Array


def mingru_init(key, input_size: int, hidden_size: int, *, dtype=jnp.float32):
    """Initialises a minGRU cell: LeCun normal ``w_x`` (as the other cells), zero bias.

    Example:
        >>> import jax, jaxrnn
        >>> p = jaxrnn.mingru_init(jax.random.key(0), 3, 5)
        >>> p.w_x.shape, p.b.shape
        ((3, 10), (10,))
    """
    return MinGRUParams.initialise(key, input_size, hidden_size, dtype)


def mingru_step(params: MinGRUParams, carry: jax.Array, x: jax.Array):
    r"""One step of minGRU.

    .. math::
        Z_t &= \sigma(X_t W_{xz} + b_z) \\
        \tilde H_t &= g(X_t W_{xh} + b_h), \qquad
            g(a) = a + \tfrac12 \ (a \ge 0), \quad \sigma(a) \ (a < 0) \\
        H_t &= (1 - Z_t) \odot H_{t-1} + Z_t \odot \tilde H_t

    Neither gate reads ``H_{t-1}``, so ``H_t = A_t ⊙ H_{t-1} + B_t`` with
    ``A_t = 1 - Z_t`` and ``B_t = Z_t ⊙ H~_t`` known from the inputs alone:
    :func:`jaxrnn.scan` of this step computes all of them with one matmul and
    solves the recurrence with an associative scan in ``O(log T)`` depth (see
    :class:`jaxrnn.LinearRecurrence`); this step is its sequential
    definition, for streaming one input at a time. ``g`` keeps ``H~_t`` positive
    and continuous (Feng et al.'s choice, which allows a log-space scan).

    Args:
        params: a :class:`MinGRUParams`.
        carry: ``H_{t-1}``, shape ``(*batch, h)``.
        x: ``X_t``, shape ``(*batch, d)``.

    Returns:
        ``(H_t, H_t)``. The update is computed in at least float32 (bfloat16
        params accumulate in float32) and cast to the carry's dtype.

    Example:
        >>> import jax, jax.numpy as jnp, jaxrnn
        >>> p = jaxrnn.mingru_init(jax.random.key(0), 3, 5)
        >>> h, y = jaxrnn.mingru_step(p, jnp.zeros((2, 5)), jnp.ones((2, 3)))
        >>> y.shape
        (2, 5)
    """
    _checks.params_type(params, MinGRUParams, "mingru_step")
    x = params.check_step(carry, x)
    return linear_step(mingru_cell, params, carry, x)


def mingru_cell(params: MinGRUParams, x: jax.Array):
    """``(A, B) = (1 - Z, Z ⊙ H~)`` for inputs ``x (..., d)``, each ``(..., h)``.

    The one place the minGRU equations are written: the step applies them to
    one input, :func:`jaxrnn.scan` to all steps at once.
    """
    params.check()
    a_z, a_h = input_projection(x, params.w_x, params.b, 2)
    z = jax.nn.sigmoid(a_z)
    return 1 - z, z * positive(a_h)


_RULE = LinearRecurrence(mingru_cell)
MINGRU = register_cell(
    Cell("mingru", mingru_init, mingru_step, MinGRUParams, zeros_hidden, _RULE, **SIZES)
)
