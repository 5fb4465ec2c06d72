"""The mLSTM of xLSTM (Beck et al. 2024): a matrix memory per head, no recurrent weights,
trained in parallel (quadratic or chunkwise)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from jaxrnn import _checks, _initializers, _sharding
from jaxrnn._cell import Cell, register_cell
from jaxrnn._params import SIZES, bias, pytree_dataclass
from jaxrnn.rules.matrix import MatrixInputs, MatrixMemory, MatrixState, matrix_step

#: The mLSTM's carry: ``h (*batch, h)``, ``c (*batch, K, s, s)``, ``n (*batch, K, s)``,
#: ``m (*batch, K)`` (see :class:`jaxrnn.rules.MatrixState`).
MLSTMState = MatrixState

_WEIGHTS = ("w_q", "w_k", "w_v", "w_o", "w_i", "w_f")


@pytree_dataclass
class MLSTMParams:
    """Parameters of an mLSTM cell with ``K`` heads of ``s = h / K`` units.

    Each ``(d, h)`` weight's columns are head-major (head ``k`` owns columns
    ``k*s .. (k+1)*s - 1``).

    Attributes:
        w_q, w_k, w_v: the query, key and value weights, ``(d, h)`` each.
        w_o: the output gate's weights ``(d, h)``, with ``b_o (h,)``.
        w_i, w_f: the input and forget gates' weights ``(d, K)``, one scalar gate per
            head, with ``b_i``, ``b_f (K,)``.
    """

    w_q: jax.Array
    w_k: jax.Array
    w_v: jax.Array
    w_o: jax.Array
    w_i: jax.Array
    w_f: jax.Array
    b_i: jax.Array
    b_f: jax.Array
    b_o: jax.Array

    @property
    def input_size(self) -> int:
        """``d``, the features of one step's input."""
        return self.w_q.shape[-2]

    @property
    def hidden_size(self) -> int:
        """``h``, the size of ``H_t``."""
        return self.w_q.shape[-1]

    @property
    def output_size(self) -> int:
        """The size of the step's output ``y = H_t``: ``h``."""
        return self.hidden_size

    @property
    def num_heads(self) -> int:
        """``K``, the number of heads (of the gates' weights)."""
        return self.w_i.shape[-1]

    def check(self):
        """Checks the fields against each other (at trace time, naming the field)."""
        ranks = dict.fromkeys(_WEIGHTS, 2) | dict.fromkeys(("b_i", "b_f", "b_o"), 1)

        def shapes():
            d, h, k = self.input_size, self.hidden_size, self.num_heads
            square = dict.fromkeys(("w_q", "w_k", "w_v", "w_o"), (d, h))
            gates = {"w_i": (d, k), "w_f": (d, k), "b_i": (k,), "b_f": (k,), "b_o": (h,)}
            return square | gates

        _checks.check_params(self, ranks, shapes)
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"params.w_i: expected num_heads (its last axis) to divide hidden_size="
                f"{self.hidden_size}, got {self.num_heads}"
            )


def mlstm_init(key, input_size: int, hidden_size: int, *, num_heads: int = 1, dtype=jnp.float32):
    """Initialises an mLSTM cell (see :func:`mlstm_step`).

    ``w_q``, ``w_k``, ``w_v``, ``w_o`` are LeCun normal; the gates' weights start at
    zero, as in the ``xlstm`` package, so each head's gates are its biases at
    first: ``b_i = 0`` and ``b_f`` spread evenly over ``[3, 6]`` across the heads
    (``σ(3) = 0.95``: a long memory), ``b_o = 0``.

    Example:
        >>> import jax, jaxrnn
        >>> p = jaxrnn.mlstm_init(jax.random.key(0), 3, 8, num_heads=2)
        >>> p.w_q.shape, p.w_i.shape, p.b_f.tolist()
        ((3, 8), (3, 2), [3.0, 6.0])
    """
    _initializers.check_sizes(key, input_size, hidden_size)
    dtype = _checks.float_dtype(dtype)
    _checks.positive_int(num_heads, "num_heads")
    if hidden_size % num_heads:
        raise ValueError(
            f"num_heads: expected a divisor of hidden_size={hidden_size}, got {num_heads}"
        )
    w = _initializers.input_weights(key, input_size, hidden_size, 4, dtype)
    w_q, w_k, w_v, w_o = jnp.split(w, 4, axis=-1)
    zeros = jnp.zeros((input_size, num_heads), dtype)
    spread = jnp.linspace(3.0, 6.0, num_heads) if num_heads > 1 else jnp.full((1,), 3.0)
    return MLSTMParams(
        w_q=w_q,
        w_k=w_k,
        w_v=w_v,
        w_o=w_o,
        w_i=zeros,
        w_f=zeros,
        b_i=jnp.zeros((num_heads,), dtype),
        b_f=spread.astype(dtype),
        b_o=jnp.zeros((hidden_size,), dtype),
    )


def mlstm_step(params: MLSTMParams, carry: MatrixState, x: jax.Array):
    r"""One step of the mLSTM.

    Per head (``K`` heads of ``s = h / K`` units), with ``q_t, k_t, v_t`` the head's
    slices of ``X_t W_q``, ``X_t W_k / \sqrt{s}``, ``X_t W_v``, and scalar gates
    ``ĩ_t = X_t w_i + b_i``, ``f̃_t = X_t w_f + b_f``:

    .. math::
        m_t &= \max(\log\sigma(\tilde f_t) + m_{t-1},\ \tilde\imath_t) \\
        i_t &= \exp(\tilde\imath_t - m_t), \qquad
            f_t = \exp(\log\sigma(\tilde f_t) + m_{t-1} - m_t) \\
        C_t &= f_t C_{t-1} + i_t k_t v_t^\top \qquad (s \times s) \\
        n_t &= f_t n_{t-1} + i_t k_t \\
        \tilde h_t &= C_t^\top q_t / (\max(|n_t^\top q_t|, \exp(-m_t)) + \epsilon) \\
        H_t &= \sigma(X_t W_o + b_o) \odot \mathrm{concat}_{heads}(\tilde h_t)

    with :math:`\epsilon = 10^{-6}`: exactly the ``xlstm`` package's
    ``recurrent_step_stabilized_simple`` given the same projections. ``m``
    starts at 0 in the zero carry (the empty memory); the readout without
    :math:`\epsilon` does not depend on it. No gate reads ``H_{t-1}``, so
    :func:`jaxrnn.scan` runs all steps at once (:class:`jaxrnn.rules.MatrixMemory`:
    quadratic up to 64 steps, chunks of 64 beyond); this step is its
    definition and streams one input at a time. Computed in at least float32,
    cast back to the carry's dtype.

    Args:
        params: an :class:`MLSTMParams`.
        carry: an :class:`MLSTMState` ``(h, c, n, m)``.
        x: ``X_t``, shape ``(*batch, d)``.

    Returns:
        ``(MLSTMState(H_t, C_t, n_t, m_t), H_t)``.

    Example:
        >>> import jax, jax.numpy as jnp, jaxrnn
        >>> p = jaxrnn.mlstm_init(jax.random.key(0), 3, 8, num_heads=2)
        >>> carry = jaxrnn.initial_carry(p, (5,))
        >>> carry.c.shape, carry.m.shape
        ((5, 2, 4, 4), (5, 2))
        >>> carry, y = jaxrnn.mlstm_step(p, carry, jnp.ones((5, 3)))
        >>> y.shape
        (5, 8)
    """
    _checks.params_type(params, MLSTMParams, "mlstm_step")
    params.check()
    _check_state(params, carry, x)
    x = _checks.check_step_args(
        x, {"carry.h": carry.h}, params.input_size, params.hidden_size, params.w_q.dtype
    )
    return matrix_step(mlstm_inputs(params, x), carry)


def _check_state(params, carry, x):
    if not isinstance(carry, MatrixState):
        got = type(carry).__name__
        if hasattr(carry, "shape"):
            got = f"an array of shape {tuple(carry.shape)}"
        raise TypeError(
            f"carry: expected a jaxrnn.MLSTMState(h, c, n, m), got {got}; see jaxrnn.initial_carry"
        )
    batch = tuple(jnp.shape(x)[:-1])
    k = params.num_heads
    s = params.hidden_size // k
    for name, shape in (("c", (k, s, s)), ("n", (k, s)), ("m", (k,))):
        value = getattr(carry, name)
        _checks.check_shape(value, (*batch, *shape), f"carry.{name}", "(*batch, K, ...)")
        _checks.check_carry_dtype(value, params.w_q.dtype, f"carry.{name}")


def mlstm_inputs(params: MLSTMParams, x: jax.Array) -> MatrixInputs:
    """The projections of inputs ``x (..., d)`` (any leading axes), in at least float32.

    The one place the mLSTM's input side is written: the step reads one input,
    :func:`jaxrnn.scan` all at once. One matmul for all six weights.
    """
    params.check()
    k = params.num_heads
    s = params.hidden_size // k
    h = params.hidden_size
    work = jnp.promote_types(params.w_q.dtype, jnp.float32)
    w = jnp.concatenate([getattr(params, name) for name in _WEIGHTS], axis=-1)
    if any(_sharding.parts(x)):  # rows merged over a sharded batch axis have no sharding
        out = jnp.matmul(x, w, preferred_element_type=work)
    else:  # one 2-D GEMM, which XLA:CPU runs faster
        rows = x.reshape(-1, x.shape[-1])
        out = jnp.matmul(rows, w, preferred_element_type=work)
        out = out.reshape(*x.shape[:-1], w.shape[-1])
    q, key, v, o, i, f = jnp.split(out, [h, 2 * h, 3 * h, 4 * h, 4 * h + k], axis=-1)
    heads = lambda a: a.reshape(*a.shape[:-1], k, s)
    b = lambda name: bias(getattr(params, name).astype(work), out)
    return MatrixInputs(
        q=heads(q),
        k=heads(key) / math.sqrt(s),
        v=heads(v),
        i=i + b("b_i"),
        f=f + b("b_f"),
        o=jax.nn.sigmoid(o + b("b_o")),
    )


def _initial_carry(params, batch_shape=()):
    batch, dtype = _checks.batch_tuple(batch_shape), params.w_q.dtype
    k = params.num_heads
    s = params.hidden_size // k
    return MatrixState(
        h=jnp.zeros((*batch, params.hidden_size), dtype),
        c=jnp.zeros((*batch, k, s, s), dtype),
        n=jnp.zeros((*batch, k, s), dtype),
        m=jnp.zeros((*batch, k), dtype),
    )


_RULE = MatrixMemory(mlstm_inputs)
MLSTM = register_cell(
    Cell("mlstm", mlstm_init, mlstm_step, MLSTMParams, _initial_carry, _RULE, hidden="h", **SIZES)
)
