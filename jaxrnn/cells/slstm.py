"""The sLSTM of xLSTM (Beck et al. 2024): exponential gates with a stabiliser and a normaliser,
memory mixing inside each head."""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxrnn import _checks, _initializers, _sharding
from jaxrnn._cell import Cell, register_cell
from jaxrnn._params import SIZES, bias, pytree_dataclass
from jaxrnn._precision import like, matmul, working
from jaxrnn.rules import fused


class SLSTMState(NamedTuple):
    """The carry of the sLSTM, four ``(*batch, h)`` arrays.

    The zero carry is the empty memory: a step from ``n = 0`` sets ``m`` to its
    input gate's pre-activation whatever ``m`` held (see :func:`slstm_step`).
    """

    h: jax.Array  # hidden state H_t, also the output
    c: jax.Array  # cell C_t, scaled by exp(-M_t)
    n: jax.Array  # normaliser N_t, scaled by exp(-M_t)
    m: jax.Array  # stabiliser M_t, the log of that scale


@pytree_dataclass
class SLSTMParams:
    """Parameters of an sLSTM cell, gates fused along the last axis in the order i, f, z, o.

    Each gate's block of ``h`` units is head-major: head ``k`` owns units
    ``k*s .. (k+1)*s - 1`` of every gate, ``s = h / num_heads``.

    Attributes:
        w_x: input weights, shape ``(d, 4h)``.
        w_h: the recurrent weights, one block per head, shape ``(num_heads, s, 4s)``:
            ``w_h[k]`` maps head ``k``'s units of ``H_{t-1}`` to the i, f, z, o
            pre-activations of its own units (gate-major). ``R`` is the
            block-diagonal ``(h, 4h)`` matrix they make.
        b: bias, shape ``(4h,)``.
    """

    w_x: jax.Array
    w_h: jax.Array
    b: jax.Array

    @property
    def input_size(self) -> int:
        """``d``, the features of one step's input."""
        return self.w_x.shape[-2]

    @property
    def hidden_size(self) -> int:
        """``h``, the size of ``H_t`` (and of ``C_t``, ``N_t``, ``M_t``)."""
        return self.w_x.shape[-1] // 4

    @property
    def output_size(self) -> int:
        """The size of the step's output ``y = H_t``: ``h``."""
        return self.hidden_size

    @property
    def num_heads(self) -> int:
        """The number of heads (blocks of ``R``)."""
        return self.w_h.shape[0]

    def check(self):
        """Checks the fields against each other (at trace time, naming the field)."""
        ranks = {"w_x": 2, "w_h": 3, "b": 1}

        def shapes():
            d, h, k = self.input_size, self.hidden_size, self.num_heads
            return {"w_x": (d, 4 * h), "w_h": (k, h // k, 4 * (h // k)), "b": (4 * h,)}

        _checks.check_params(self, ranks, shapes)
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"params.w_h: expected num_heads (its first axis) to divide hidden_size="
                f"{self.hidden_size}, got {self.num_heads}"
            )


def slstm_init(
    key,
    input_size: int,
    hidden_size: int,
    *,
    num_heads: int = 1,
    forget_bias=1.0,
    dtype=jnp.float32,
):
    """Initialises an sLSTM cell (see :func:`slstm_step`).

    ``w_x`` is LeCun normal, each head's block of ``w_h`` has one orthogonal
    ``(s, s)`` block per gate, the forget gate's bias starts at ``forget_bias``
    and the other biases at 0. One head (the default) is a full recurrent
    matrix; xLSTM's models use 4.

    Example:
        >>> import jax, jaxrnn
        >>> p = jaxrnn.slstm_init(jax.random.key(0), 3, 8, num_heads=2)
        >>> p.w_x.shape, p.w_h.shape, p.b.shape, p.num_heads
        ((3, 32), (2, 4, 16), (32,), 2)
    """
    _initializers.check_sizes(key, input_size, hidden_size)
    dtype = _checks.float_dtype(dtype)
    _checks.positive_int(num_heads, "num_heads")
    _checks.finite_number(forget_bias, "forget_bias")
    if hidden_size % num_heads:
        raise ValueError(
            f"num_heads: expected a divisor of hidden_size={hidden_size}, got {num_heads}"
        )
    size = hidden_size // num_heads
    kx, kh = jax.random.split(key)
    w_h = [
        _initializers.recurrent_weights(k, size, 4, dtype) for k in jax.random.split(kh, num_heads)
    ]
    return SLSTMParams(
        w_x=_initializers.input_weights(kx, input_size, hidden_size, 4, dtype),
        w_h=jnp.stack(w_h),
        b=jnp.zeros((4, hidden_size), dtype).at[1].set(forget_bias).reshape(-1),
    )


def slstm_step(params: SLSTMParams, carry: SLSTMState, x: jax.Array, *, recurrent_mask=None):
    r"""One step of the sLSTM.

    .. math::
        [\tilde I_t, \tilde F_t, \tilde Z_t, \tilde O_t] &= X_t W_x + H_{t-1} R + b \\
        M_t &= \max(\log\sigma(\tilde F_t) + M_{t-1},\ \tilde I_t) \\
        I_t &= \exp(\tilde I_t - M_t), \qquad
            F_t = \exp(\log\sigma(\tilde F_t) + M_{t-1} - M_t) \\
        C_t &= F_t \odot C_{t-1} + I_t \odot \tanh(\tilde Z_t) \\
        N_t &= F_t \odot N_{t-1} + I_t \\
        H_t &= \sigma(\tilde O_t) \odot C_t / N_t

    ``R`` is block-diagonal, one block per head (:class:`SLSTMParams`), so
    memory mixes only inside a head. ``M_t`` keeps both gates at most 1, so
    nothing overflows however large the pre-activations; ``C_t`` and ``N_t``
    are the unstabilised cell and normaliser times ``exp(-M_t)``, which ``H_t``
    does not see. Where ``N_{t-1} = 0`` (the zero carry: the empty memory) the
    step takes :math:`M_t = \tilde I_t` and :math:`F_t = 0`, so the first step
    from the zero carry, or after a reset, is :math:`H_t = \sigma(\tilde O_t)
    \odot \tanh(\tilde Z_t)` exactly, whatever ``M`` held (it starts at 0).
    From there on one of ``F_t``, ``I_t`` is 1, so ``N_t >= 1``. This is the
    ``xlstm`` package's sLSTM (its ``vanilla`` backend), which also starts
    from ``M_t = \tilde I_t`` when the normaliser is zero.

    Args:
        params: an :class:`SLSTMParams`.
        carry: an :class:`SLSTMState` ``(h, c, n, m)``, each ``(*batch, h)``.
        x: ``X_t``, shape ``(*batch, d)``.
        recurrent_mask: optional ``(*batch, h)`` multiplier on ``H_{t-1}`` where it
            enters the recurrent matmul (variational recurrent dropout).

    Returns:
        ``(SLSTMState(H_t, C_t, N_t, M_t), H_t)``.

    Example:
        >>> import functools, jax, jax.numpy as jnp, jaxrnn
        >>> p = jaxrnn.slstm_init(jax.random.key(0), 3, 4, num_heads=2)
        >>> carry = jaxrnn.initial_carry(p, batch_shape=(2,))
        >>> step = functools.partial(jaxrnn.slstm_step, p)
        >>> carry, ys = jax.lax.scan(step, carry, jnp.ones((7, 2, 3)))
        >>> ys.shape, carry.m.shape
        ((7, 2, 4), (2, 4))
    """
    state, h, _ = slstm_cell(params, carry, x, recurrent_mask)
    return state, h


def slstm_cell(params: SLSTMParams, carry: SLSTMState, x: jax.Array, recurrent_mask=None):
    """:func:`slstm_step`, also returning what its fused gradient keeps.

    The one place the sLSTM equations are written; :func:`jaxrnn.scan`'s fused
    gradient keeps the activations ``(I, F, tanh Z~, σ(O~), C, N, ∂M/∂(log σ(F~) + M),
    σ(-F~))``.
    """
    _checks.params_type(params, SLSTMParams, "slstm_step")
    params.check()
    _check_state(carry)
    h = params.hidden_size
    x = _checks.check_step_args(
        x, dict(zip(SLSTMState._fields, carry, strict=True)), params.input_size, h,
        params.w_x.dtype,
    )  # fmt: skip
    return _recurrent(params, carry, _project(params, x), recurrent_mask)


def _check_state(carry):
    if not isinstance(carry, SLSTMState):
        got = type(carry).__name__
        if hasattr(carry, "shape"):
            got = f"an array of shape {tuple(carry.shape)}"
        raise TypeError(
            f"carry: expected a jaxrnn.SLSTMState(h, c, n, m) of four (*batch, h) arrays, "
            f"got {got}; see jaxrnn.initial_carry"
        )


def _project(params: SLSTMParams, x: jax.Array):
    """``X W_x``, the part of the step that reads only the input (any leading axes)."""
    return matmul(x, params.w_x)


def _mix(w_h, h):
    """``H R`` (``R`` the block-diagonal ``(h, 4h)`` of ``w_h``): ``(*batch, h)`` to ``4h``."""
    k, s = w_h.shape[:2]
    heads = h.reshape(*h.shape[:-1], k, s).astype(w_h.dtype)
    out = jnp.einsum(
        "...ki,kigj->...gkj", heads, w_h.reshape(k, s, 4, s),
        preferred_element_type=working(w_h.dtype),
    )  # fmt: skip
    return out.reshape(*h.shape[:-1], 4 * k * s)


def _mix_transpose(w_h, da):
    """The transpose of :func:`_mix`: ``(*batch, 4h) -> (*batch, h)``."""
    k, s = w_h.shape[:2]
    blocks = da.reshape(*da.shape[:-1], 4, k, s).astype(w_h.dtype)
    out = jnp.einsum(
        "...gkj,kigj->...ki", blocks, w_h.reshape(k, s, 4, s),
        preferred_element_type=working(w_h.dtype),
    )  # fmt: skip
    return out.reshape(*da.shape[:-1], k * s)


def _recurrent(params: SLSTMParams, carry: SLSTMState, ax, recurrent_mask=None):
    """:func:`slstm_cell` from the step's ``_project(params, x)``: the rest of the step."""
    h_in = _checks.apply_recurrent_mask(carry.h, recurrent_mask)
    a = ax + _mix(params.w_h, h_in) + bias(params.b, ax)
    a_i, a_f, a_z, a_o = jnp.split(a, 4, axis=-1)
    m_f = jax.nn.log_sigmoid(a_f) + carry.m
    empty = carry.n == 0
    m = jnp.where(empty, a_i, jnp.maximum(m_f, a_i))
    i = jnp.exp(a_i - m)
    # The inner where keeps exp's argument (large where the memory is empty) finite.
    zero = jnp.zeros_like(m)
    f = jnp.where(empty, zero, jnp.exp(jnp.where(empty, zero, m_f - m)))
    z, o = jnp.tanh(a_z), jax.nn.sigmoid(a_o)
    c = f * carry.c + i * z
    n = f * carry.n + i
    h = o * (c / n)
    # dM/dm_f, as jnp.maximum's derivative (a tie shares it equally).
    one = jnp.ones_like(m)
    sel = jnp.where(m_f > a_i, one, jnp.where(m_f == a_i, one / 2, zero))
    sel = jnp.where(empty, zero, sel)
    residuals = (i, f, z, o, c, n, sel, jax.nn.sigmoid(-a_f))
    state = like(SLSTMState(h=h, c=c, n=n, m=m), carry)
    return state, state.h, residuals


# The fused gradient (see jaxrnn.rules.fused) ----------------------------------------------


def _forward(params, carry, x, options):
    return slstm_cell(params, carry, x, options.get("recurrent_mask"))


def _project_inputs(params, xs, options):
    return _project(params, xs)


def _forward_projected(params, carry, ax, options):
    return _recurrent(params, carry, ax, options.get("recurrent_mask"))


def _backward(params, residuals, carry_in, d_carry, dy, options):
    i, f, z, o, c, n, sel, sig_neg_f = residuals
    dh = d_carry.h + dy
    ratio = c / n
    q = dh * o / n
    da_o = dh * ratio * fused.sigmoid_grad(o)
    dc = d_carry.c + q
    dn = d_carry.n - q * ratio
    di = dc * z + dn
    df = dc * carry_in.c + dn * carry_in.n
    da_z = dc * i * fused.tanh_grad(z)
    di, df = di * i, df * f  # now the cotangents of the exponents
    dm = d_carry.m - di - df
    da_i = di + dm * (1 - sel)
    dm_f = df + dm * sel
    da = jnp.concatenate([da_i, dm_f * sig_neg_f, da_z, da_o], axis=-1)
    d_h, d_options = fused.masked_input(carry_in.h, _mix_transpose(params.w_h, da), options)
    d_carry_in = SLSTMState(h=d_h, c=dc * f, n=dn * f, m=dm_f)
    return d_carry_in, da, d_options


def _param_grads(params, xs, carries_in, residuals, dgs, options):
    k, s = params.w_h.shape[:2]
    h_ins = fused.masked_inputs(carries_in.h, options)
    dw_x, db, dxs = fused.input_grads(params.w_x, xs, dgs)
    rows = h_ins.reshape(*h_ins.shape[:-1], k, s)  # all steps and sequences: the leading axes
    d_rows = dgs.reshape(*dgs.shape[:-1], 4, k, s)
    dw_h = jnp.einsum("...ki,...gkj->kigj", rows, d_rows, **_sharding.summed(rows, 4))
    dw_h = dw_h.reshape(k, s, 4 * s)
    return dataclasses.replace(params, w_x=dw_x, w_h=dw_h, b=db), dxs


def _initial_carry(params, batch_shape=()):
    zeros = jnp.zeros((*_checks.batch_tuple(batch_shape), params.hidden_size), params.w_x.dtype)
    return SLSTMState(h=zeros, c=zeros, n=zeros, m=zeros)


_RULE = fused.FusedGradient(_forward, _backward, _param_grads, _project_inputs, _forward_projected)
SLSTM = register_cell(
    Cell("slstm", slstm_init, slstm_step, SLSTMParams, _initial_carry, _RULE, hidden="h", **SIZES)
)
