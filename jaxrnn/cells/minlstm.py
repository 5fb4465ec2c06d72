"""minLSTM (Feng et al. 2024): an LSTM whose gates read only the input, trained in parallel."""

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
class MinLSTMParams(InputWeights):
    """Parameters of a minLSTM cell, gates fused along the last axis in the order f, i, candidate.

    Attributes:
        w_x: input weights, shape ``(d, 3h)``.
        b: bias, shape ``(3h,)``.
    """

    gates = 3

    w_x: jax.Array
    b: jax.Array


def minlstm_init(key, input_size: int, hidden_size: int, *, dtype=jnp.float32):
    """Initialises a minLSTM cell: LeCun normal ``w_x`` (as the other cells), zero bias.

    Example:
        >>> import jax, jaxrnn
        >>> p = jaxrnn.minlstm_init(jax.random.key(0), 3, 5)
        >>> p.w_x.shape, p.b.shape
        ((3, 15), (15,))
    """
    return MinLSTMParams.initialise(key, input_size, hidden_size, dtype)


def minlstm_step(params: MinLSTMParams, carry: jax.Array, x: jax.Array):
    r"""One step of minLSTM.

    .. math::
        F_t &= \sigma(X_t W_{xf} + b_f), \qquad I_t = \sigma(X_t W_{xi} + b_i), \qquad
            \tilde H_t = g(X_t W_{xh} + b_h) \\
        H_t &= \frac{F_t}{F_t + I_t} \odot H_{t-1} + \frac{I_t}{F_t + I_t} \odot \tilde H_t

    with ``g`` as in :func:`jaxrnn.mingru_step`. The normalised gates make
    ``H_t`` a convex combination of ``H_{t-1}`` and ``H~_t``, so the state stays
    bounded; like minGRU's, every coefficient reads only the input, and
    :func:`jaxrnn.scan` of this step solves the recurrence in parallel.

    Args:
        params: a :class:`MinLSTMParams`.
        carry: ``H_{t-1}``, shape ``(*batch, h)``.
        x: ``X_t``, shape ``(*batch, d)``.

    Returns:
        ``(H_t, H_t)``, computed in at least float32 and cast to the carry's dtype.

    Example:
        >>> import jax, jax.numpy as jnp, jaxrnn
        >>> p = jaxrnn.minlstm_init(jax.random.key(0), 3, 5)
        >>> h, y = jaxrnn.minlstm_step(p, jnp.zeros(5), jnp.ones(3))
        >>> y.shape
        (5,)
    """
    _checks.params_type(params, MinLSTMParams, "minlstm_step")
    x = params.check_step(carry, x)
    return linear_step(minlstm_cell, params, carry, x)


def minlstm_cell(params: MinLSTMParams, x: jax.Array):
    """``(A, B) = (F / (F + I), I / (F + I) ⊙ H~)`` for inputs ``x (..., d)``.

    The one place the minLSTM equations are written. ``F / (F + I)`` is
    computed as ``σ(log F - log I)`` with ``log σ`` in closed form, so it stays
    exact where ``F`` and ``I`` both underflow (large negative pre-activations,
    where the quotient as written is ``0 / 0``).
    """
    params.check()
    a_f, a_i, a_h = input_projection(x, params.w_x, params.b, 3)
    forget = jax.nn.sigmoid(jax.nn.log_sigmoid(a_f) - jax.nn.log_sigmoid(a_i))
    return forget, (1 - forget) * positive(a_h)


_RULE = LinearRecurrence(minlstm_cell)
MINLSTM = register_cell(
    Cell("minlstm", minlstm_init, minlstm_step, MinLSTMParams, zeros_hidden, _RULE, **SIZES)
)
