"""The minimal gated unit (Zhou et al. 2016), as Flax Linen's ``MGUCell``."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from jaxrnn import _checks, _initializers
from jaxrnn._carry import zeros_hidden
from jaxrnn._cell import Cell, register_cell
from jaxrnn._params import SIZES, RecurrentWeights, bias, pytree_dataclass, static
from jaxrnn._precision import like, matmul
from jaxrnn.rules import fused


@pytree_dataclass
class MGUParams(RecurrentWeights):
    """Parameters of an MGU cell, gates fused along the last axis in the order f, n.

    Flax's ``MGUCell`` keeps one ``Dense`` per gate: ``w_x = [if.kernel, in.kernel]``,
    ``w_h = [hf.kernel, hn.kernel]``, ``b_x = [if.bias, in.bias]``, ``b_h = hn.bias``
    (see :func:`jaxrnn.interop.from_flax`).

    Attributes:
        w_x: input weights, shape ``(d, 2h)``.
        w_h: recurrent weights, shape ``(h, 2h)``.
        b_x: input bias, shape ``(2h,)``.
        b_h: recurrent bias of the candidate, shape ``(h,)``. It stays apart from
            ``b_xn`` because the forget gate multiplies it; with
            ``reset_gate=False`` it does not enter the step (Flax has no such
            bias there) and its gradient is zero.
        reset_gate: whether ``F_t`` also gates the candidate's recurrent term
            (see :func:`mgu_step`); static, ``True`` as in Flax.
    """

    w_x: jax.Array
    w_h: jax.Array
    b_x: jax.Array
    b_h: jax.Array
    reset_gate: bool = static(True)

    def check(self):
        """Checks the fields against each other (at trace time, naming the field)."""
        d, h = self.input_size, self.hidden_size
        _checks.check_params(
            self,
            {"w_x": 2, "w_h": 2, "b_x": 1, "b_h": 1},
            lambda: {"w_x": (d, 2 * h), "w_h": (h, 2 * h), "b_x": (2 * h,), "b_h": (h,)},
        )

    def __post_init__(self):
        _checks.boolean(self.reset_gate, "reset_gate")


def mgu_init(
    key, input_size: int, hidden_size: int, *, reset_gate=True, forget_bias=1.0, dtype=jnp.float32
):
    """Initialises an MGU cell as Flax does: ``b_xf = forget_bias`` (1.0), other biases 0.

    Weights follow ``jaxrnn._initializers`` (LeCun normal input weights,
    orthogonal recurrent blocks per gate). The forget gate's bias of 1 keeps the
    previous state by default (Jozefowicz et al. 2015), as Flax's ``forget_bias_init``.

    Example:
        >>> import jax, jaxrnn
        >>> p = jaxrnn.mgu_init(jax.random.key(0), 3, 5)
        >>> p.w_x.shape, p.w_h.shape, p.b_x.shape, p.b_h.shape, p.reset_gate
        ((3, 10), (5, 10), (10,), (5,), True)
    """
    _initializers.check_sizes(key, input_size, hidden_size)
    dtype = _checks.float_dtype(dtype)
    _checks.finite_number(forget_bias, "forget_bias")
    kx, kh = jax.random.split(key)
    return MGUParams(
        w_x=_initializers.input_weights(kx, input_size, hidden_size, 2, dtype),
        w_h=_initializers.recurrent_weights(kh, hidden_size, 2, dtype),
        b_x=jnp.zeros((2, hidden_size), dtype).at[0].set(forget_bias).reshape(-1),
        b_h=jnp.zeros((hidden_size,), dtype),
        reset_gate=reset_gate,
    )


def mgu_step(params: MGUParams, carry: jax.Array, x: jax.Array, *, recurrent_mask=None):
    r"""One step of the MGU, exactly Flax Linen's ``MGUCell``.

    .. math::
        F_t &= \sigma(X_t W_{xf} + b_{xf} + H_{t-1} W_{hf}) \\
        N_t &= \tanh(X_t W_{xn} + b_{xn} + F_t \odot (H_{t-1} W_{hn} + b_{hn}))
            && \text{reset\_gate=True (default)} \\
        N_t &= \tanh(X_t W_{xn} + b_{xn} + H_{t-1} W_{hn})
            && \text{reset\_gate=False} \\
        H_t &= (1 - F_t) \odot N_t + F_t \odot H_{t-1}

    The one gate does the work of the GRU's two: ``F_t`` both keeps the old state
    and (with ``reset_gate``) resets the recurrent term of the candidate.

    Args:
        params: an :class:`MGUParams`.
        carry: ``H_{t-1}``, shape ``(*batch, h)``.
        x: ``X_t``, shape ``(*batch, d)``.
        recurrent_mask: optional ``(*batch, h)`` multiplier on ``H_{t-1}`` where it
            enters the recurrent matmul (variational recurrent dropout); the
            interpolation with ``F_t`` uses the unmasked ``H_{t-1}``.

    Returns:
        ``(H_t, H_t)``.

    Example:
        >>> import jax, jax.numpy as jnp, jaxrnn
        >>> p = jaxrnn.mgu_init(jax.random.key(0), 3, 5, reset_gate=False)
        >>> h, y = jaxrnn.mgu_step(p, jnp.zeros((2, 5)), jnp.ones((2, 3)))
        >>> y.shape
        (2, 5)
    """
    h, _ = mgu_cell(params, carry, x, recurrent_mask)
    return h, h


def mgu_cell(params: MGUParams, carry: jax.Array, x: jax.Array, recurrent_mask=None):
    """:func:`mgu_step`'s ``H_t``, with the activations ``(F_t, N_t[, H_{t-1} W_hn + b_hn])``.

    The one place the MGU equations are written; the fused gradient keeps these
    activations for its backward pass (the last one only with ``reset_gate=True``).
    """
    _checks.params_type(params, MGUParams, "mgu_step")
    params.check()
    x = _checks.check_step_args(
        x, {"carry": carry}, params.input_size, params.hidden_size, params.w_h.dtype
    )
    n = params.hidden_size
    h_in = _checks.apply_recurrent_mask(carry, recurrent_mask)
    gx = matmul(x, params.w_x) + bias(params.b_x, x)
    gh = matmul(h_in, params.w_h)
    f = jax.nn.sigmoid(gx[..., :n] + gh[..., :n])
    if params.reset_gate:
        gh_n = gh[..., n:] + bias(params.b_h, x)
        candidate = jnp.tanh(gx[..., n:] + f * gh_n)
        activations = (f, candidate, gh_n)
    else:
        candidate = jnp.tanh(gx[..., n:] + gh[..., n:])
        activations = (f, candidate)
    h = like((1 - f) * candidate + f * carry, carry)
    return h, activations


# The fused gradient (see jaxrnn.rules.fused) ----------------------------------------------


def _forward(params, h, x, options):
    new, activations = mgu_cell(params, h, x, options.get("recurrent_mask"))
    return new, new, activations


def _backward(params, residuals, h, dh, dy, options):
    f, candidate = residuals[:2]
    dh = dh + dy
    dn = dh * (1 - f) * fused.tanh_grad(candidate)
    df = dh * (h - candidate)
    if params.reset_gate:
        (gh_n,) = residuals[2:]
        df = df + dn * gh_n
        dgh_n = dn * f
    else:
        dgh_n = dn
    df = df * fused.sigmoid_grad(f)
    d_h_in = matmul(jnp.concatenate([df, dgh_n], axis=-1), params.w_h.T)
    d_h, d_options = fused.masked_input(h, d_h_in, options)
    return dh * f + d_h, jnp.concatenate([df, dn], axis=-1), d_options


def _param_grads(params, xs, hs, residuals, dgs, options):
    n = params.hidden_size
    f = residuals[0]
    dw_x, db_x, dxs = fused.input_grads(params.w_x, xs, dgs)
    dgh_n = dgs[..., n:] * f if params.reset_gate else dgs[..., n:]
    dgh = jnp.concatenate([dgs[..., :n], dgh_n], axis=-1)
    dw_h = fused.contract(fused.masked_inputs(hs, options), dgh)
    db_h = fused.sum_rows(dgh_n) if params.reset_gate else jnp.zeros_like(params.b_h)
    return dataclasses.replace(params, w_x=dw_x, w_h=dw_h, b_x=db_x, b_h=db_h), dxs


_RULE = fused.FusedGradient(_forward, _backward, _param_grads)
MGU = register_cell(Cell("mgu", mgu_init, mgu_step, MGUParams, zeros_hidden, _RULE, **SIZES))
