"""The gated recurrent unit (Cho et al. 2014), in both reset placements."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from jaxrnn import _checks, _fused, _initializers
from jaxrnn._carry import zeros_hidden
from jaxrnn._cell import Cell, register_cell
from jaxrnn._pytree import FusedGates, bias, pytree_dataclass, static


@pytree_dataclass
class GRUParams(FusedGates):
    """Parameters of a GRU cell, gates fused along the last axis in the order r, z, n.

    The order is PyTorch's: ``w_x = weight_ih.T``, ``w_h = weight_hh.T``,
    ``b_x = bias_ih``, ``b_h = bias_hh``. The two biases stay separate because
    with ``reset_after=True`` the reset gate multiplies ``b_hn`` but not ``b_xn``.

    Attributes:
        w_x: input weights, shape ``(d, 3h)``.
        w_h: recurrent weights, shape ``(h, 3h)``.
        b_x: input bias, shape ``(3h,)``.
        b_h: recurrent bias, shape ``(3h,)``.
        reset_after: where the reset gate applies (see :func:`gru_step`); static.
    """

    w_x: jax.Array
    w_h: jax.Array
    b_x: jax.Array
    b_h: jax.Array
    reset_after: bool = static(False)

    def check(self):
        """Checks the fields against each other (at trace time, naming the field)."""
        d, h = self.input_size, self.hidden_size
        _checks.check_params(
            self,
            {"w_x": 2, "w_h": 2, "b_x": 1, "b_h": 1},
            lambda: {"w_x": (d, 3 * h), "w_h": (h, 3 * h), "b_x": (3 * h,), "b_h": (3 * h,)},
        )

    def __post_init__(self):
        _checks.boolean(self.reset_after, "reset_after")


def gru_init(key, input_size: int, hidden_size: int, *, reset_after=False, dtype=jnp.float32):
    """Initialises a GRU cell; ``reset_after=True`` gives the PyTorch/cuDNN/Keras form.

    Example:
        >>> import jax, jaxrnn
        >>> p = jaxrnn.gru_init(jax.random.key(0), 3, 5, reset_after=True)
        >>> p.w_x.shape, p.w_h.shape, p.b_x.shape, p.reset_after
        ((3, 15), (5, 15), (15,), True)
    """
    _initializers.check_sizes(input_size, hidden_size)
    dtype = _checks.float_dtype(dtype)
    kx, kh = jax.random.split(key)
    return GRUParams(
        w_x=_initializers.input_weights(kx, input_size, hidden_size, 3, dtype),
        w_h=_initializers.recurrent_weights(kh, hidden_size, 3, dtype),
        b_x=jnp.zeros((3 * hidden_size,), dtype),
        b_h=jnp.zeros((3 * hidden_size,), dtype),
        reset_after=reset_after,
    )


def gru_step(params: GRUParams, carry: jax.Array, x: jax.Array, *, recurrent_mask=None):
    r"""One step of the GRU.

    .. math::
        R_t &= \sigma(X_t W_{xr} + b_{xr} + H_{t-1} W_{hr} + b_{hr}) \\
        Z_t &= \sigma(X_t W_{xz} + b_{xz} + H_{t-1} W_{hz} + b_{hz}) \\
        \tilde H_t &= \tanh(X_t W_{xn} + b_{xn} + (R_t \odot H_{t-1}) W_{hn} + b_{hn})
            && \text{reset\_after=False (Cho et al. 2014, the default)} \\
        \tilde H_t &= \tanh(X_t W_{xn} + b_{xn} + R_t \odot (H_{t-1} W_{hn} + b_{hn}))
            && \text{reset\_after=True (PyTorch, cuDNN, Keras)} \\
        H_t &= Z_t \odot H_{t-1} + (1 - Z_t) \odot \tilde H_t

    Args:
        params: a :class:`GRUParams`.
        carry: ``H_{t-1}``, shape ``(*batch, h)``.
        x: ``X_t``, shape ``(*batch, d)``.
        recurrent_mask: optional ``(*batch, h)`` multiplier on ``H_{t-1}`` where it
            enters the recurrent matmuls (variational recurrent dropout); the
            interpolation with ``Z_t`` uses the unmasked ``H_{t-1}``.

    Returns:
        ``(H_t, H_t)``.

    Example:
        >>> import jax, jax.numpy as jnp, jaxrnn
        >>> p = jaxrnn.gru_init(jax.random.key(0), 3, 5)
        >>> h, y = jaxrnn.gru_step(p, jnp.zeros((2, 5)), jnp.ones((2, 3)))
        >>> y.shape
        (2, 5)
    """
    h, _ = gru_cell(params, carry, x, recurrent_mask)
    return h, h


def gru_cell(params: GRUParams, carry: jax.Array, x: jax.Array, recurrent_mask=None):
    """:func:`gru_step`'s ``H_t``, with the activations ``(R_t, Z_t, H~_t[, H_{t-1} W_hn + b_hn])``.

    The one place the GRU equations are written; the fused gradient of
    :func:`jaxrnn.scan` keeps these activations for its backward pass (the last
    one only with ``reset_after=True``).
    """
    params.check()
    x = _checks.check_step_args(
        x, {"carry": carry}, params.input_size, params.hidden_size, params.w_h.dtype
    )
    n = params.hidden_size
    h_in = _checks.masked(carry, recurrent_mask)
    gx = x @ params.w_x + bias(params.b_x, x)
    if params.reset_after:
        gh = h_in @ params.w_h + bias(params.b_h, x)
        r, z = jnp.split(jax.nn.sigmoid(gx[..., : 2 * n] + gh[..., : 2 * n]), 2, axis=-1)
        gh_n = gh[..., 2 * n :]
        candidate = jnp.tanh(gx[..., 2 * n :] + r * gh_n)
        activations = (r, z, candidate, gh_n)
    else:
        gh = h_in @ params.w_h[:, : 2 * n] + bias(params.b_h[: 2 * n], x)
        r, z = jnp.split(jax.nn.sigmoid(gx[..., : 2 * n] + gh), 2, axis=-1)
        candidate = jnp.tanh(
            gx[..., 2 * n :] + (r * h_in) @ params.w_h[:, 2 * n :] + bias(params.b_h[2 * n :], x)
        )
        activations = (r, z, candidate)
    h = z * carry + (1 - z) * candidate
    return h, activations


# The fused gradient (see jaxrnn._fused) ----------------------------------------------------


def _forward(params, h, x, options):
    new, activations = gru_cell(params, h, x, options.get("recurrent_mask"))
    return new, new, activations


def _backward(params, residuals, h, dh, dy, options):
    n = params.hidden_size
    r, z, candidate = residuals[:3]
    h_in = _checks.masked(h, options.get("recurrent_mask"))
    dh = dh + dy
    dz = dh * (h - candidate) * _fused.sigmoid_grad(z)
    dn = dh * (1 - z) * _fused.tanh_grad(candidate)
    if params.reset_after:
        (gh_n,) = residuals[3:]
        dr = dn * gh_n * _fused.sigmoid_grad(r)
        d_h_in = jnp.concatenate([dr, dz, dn * r], axis=-1) @ params.w_h.T
    else:
        d_rh = dn @ params.w_h[:, 2 * n :].T
        dr = d_rh * h_in * _fused.sigmoid_grad(r)
        d_h_in = d_rh * r + jnp.concatenate([dr, dz], axis=-1) @ params.w_h[:, : 2 * n].T
    d_h, d_options = _fused.masked_input(h, d_h_in, options)
    return dh * z + d_h, jnp.concatenate([dr, dz, dn], axis=-1), d_options


def _param_grads(params, xs, hs, residuals, dgs, options):
    n = params.hidden_size
    r = residuals[0]
    h_ins = _fused.masked_inputs(hs, options)
    dw_x, db_x, dxs = _fused.input_grads(params.w_x, xs, dgs)
    if params.reset_after:
        dgh = jnp.concatenate([dgs[..., : 2 * n], dgs[..., 2 * n :] * r], axis=-1)
        dw_h = _fused.flat(h_ins).T @ _fused.flat(dgh)
        db_h = _fused.flat(dgh).sum(0)
    else:
        dw_h = jnp.concatenate(
            [
                _fused.flat(h_ins).T @ _fused.flat(dgs[..., : 2 * n]),
                _fused.flat(r * h_ins).T @ _fused.flat(dgs[..., 2 * n :]),
            ],
            axis=-1,
        )
        db_h = db_x
    return dataclasses.replace(params, w_x=dw_x, w_h=dw_h, b_x=db_x, b_h=db_h), dxs


GRU = register_cell(
    Cell(
        name="gru",
        init=gru_init,
        step=gru_step,
        params_type=GRUParams,
        initial_carry=lambda params, batch_shape=(): zeros_hidden(params, batch_shape),
        scan_rule=_fused.FusedGradient(_forward, _backward, _param_grads),
    )
)
