"""The gated recurrent unit (Cho et al. 2014), both reset placements, optional layer norm."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from jaxrnn import _checks, _initializers
from jaxrnn import _layer_norm as _ln
from jaxrnn._carry import zeros_hidden
from jaxrnn._cell import Cell, register_cell
from jaxrnn._layer_norm import LayerNormParams
from jaxrnn._params import SIZES, RecurrentWeights, bias, pytree_dataclass, static
from jaxrnn._precision import like, matmul
from jaxrnn.rules import fused


@pytree_dataclass
class GRUParams(RecurrentWeights):
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
        ln_x, ln_h: with ``layer_norm``: gain and bias ``(3h,)`` of the
            normalisation of the input and the recurrent terms; ``None`` without.
        layer_norm: the layer-normalised GRU (see :func:`gru_step`); static.
    """

    w_x: jax.Array
    w_h: jax.Array
    b_x: jax.Array
    b_h: jax.Array
    reset_after: bool = static(False)
    ln_x: LayerNormParams | None = None
    ln_h: LayerNormParams | None = None
    layer_norm: bool = static(False)

    def check(self):
        """Checks the fields against each other (at trace time, naming the field)."""
        for field in ("ln_x", "ln_h"):
            option = f"layer_norm={self.layer_norm}"
            _checks.present(getattr(self, field), self.layer_norm, f"params.{field}", option)
        ranks = {"w_x": 2, "w_h": 2, "b_x": 1, "b_h": 1}
        norms = [f"{ln}.{part}" for ln in ("ln_x", "ln_h") for part in ("scale", "bias")]
        if self.layer_norm:
            ranks |= dict.fromkeys(norms, 1)

        def shapes():
            d, h = self.input_size, self.hidden_size
            shapes = {"w_x": (d, 3 * h), "w_h": (h, 3 * h), "b_x": (3 * h,), "b_h": (3 * h,)}
            return shapes | (dict.fromkeys(norms, (3 * h,)) if self.layer_norm else {})

        _checks.check_params(self, ranks, shapes)

    def __post_init__(self):
        _checks.boolean(self.reset_after, "reset_after")
        _checks.boolean(self.layer_norm, "layer_norm")


def gru_init(
    key,
    input_size: int,
    hidden_size: int,
    *,
    reset_after=False,
    layer_norm: bool = False,
    dtype=jnp.float32,
):
    """Initialises a GRU cell; ``reset_after=True`` gives the PyTorch/cuDNN/Keras form.

    ``layer_norm=True`` adds the gains (starting at 1) and biases (at 0) of the
    layer normalisations ``ln_x`` and ``ln_h`` (see :func:`gru_step`).

    Example:
        >>> import jax, jaxrnn
        >>> p = jaxrnn.gru_init(jax.random.key(0), 3, 5, reset_after=True)
        >>> p.w_x.shape, p.w_h.shape, p.b_x.shape, p.reset_after
        ((3, 15), (5, 15), (15,), True)
    """
    _initializers.check_sizes(key, input_size, hidden_size)
    dtype = _checks.float_dtype(dtype)
    layer_norm = _checks.boolean(layer_norm, "layer_norm")
    kx, kh = jax.random.split(key)
    norm = _ln.layer_norm_init(3 * hidden_size, dtype) if layer_norm else None
    return GRUParams(
        w_x=_initializers.input_weights(kx, input_size, hidden_size, 3, dtype),
        w_h=_initializers.recurrent_weights(kh, hidden_size, 3, dtype),
        b_x=jnp.zeros((3 * hidden_size,), dtype),
        b_h=jnp.zeros((3 * hidden_size,), dtype),
        reset_after=reset_after,
        ln_x=norm,
        ln_h=norm,
        layer_norm=layer_norm,
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

    With ``layer_norm=True`` (Ba, Kiros & Hinton 2016) every input term
    :math:`X_t W_{x\cdot}` becomes :math:`\mathrm{LN}_x(X_t W_{x\cdot})` and every
    recurrent term :math:`\mathrm{LN}_h(\cdot)` before the biases are added,
    each gate's block of ``h`` units normalised on its own with its own gain and
    bias (epsilon 1e-5). Where the reset gate meets the normalisation:

    * ``reset_after=True``: :math:`\tilde H_t = \tanh(\mathrm{LN}_x(X_t W_{xn}) + b_{xn}
      + R_t \odot (\mathrm{LN}_h(H_{t-1} W_{hn}) + b_{hn}))`: the reset gate
      scales the normalised recurrent term.
    * ``reset_after=False``: :math:`\tilde H_t = \tanh(\mathrm{LN}_x(X_t W_{xn}) + b_{xn}
      + \mathrm{LN}_h((R_t \odot H_{t-1}) W_{hn}) + b_{hn})`: the reset gate
      acts before the matmul, and the product is normalised.

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
    _checks.params_type(params, GRUParams, "gru_step")
    params.check()
    x = _checks.check_step_args(
        x, {"carry": carry}, params.input_size, params.hidden_size, params.w_h.dtype
    )
    return _recurrent(params, carry, _project(params, x), recurrent_mask)


def _project(params: GRUParams, x: jax.Array):
    """``(LN_x(X W_x) + b_x, residuals)``: the part of the step that reads only the input.

    For ``x`` with any leading axes, e.g. a chunk of steps ``(k, *batch, d)``: the
    normalisation is per row, so a chunk projected at once gives each step's values.
    """
    gx, ln_x = _ln.normalize(params.ln_x, matmul(x, params.w_x), 3)
    return gx + bias(params.b_x, x), ln_x


def _recurrent(params: GRUParams, carry: jax.Array, projected, recurrent_mask=None):
    """:func:`gru_cell` from the step's ``_project(params, x)``: the rest of the step."""
    gx, ln_x = projected
    n = params.hidden_size
    ln_rz, ln_n = _norms(params)
    h_in = _checks.apply_recurrent_mask(carry, recurrent_mask)
    if params.reset_after:
        gh, ln_h = _ln.normalize(params.ln_h, matmul(h_in, params.w_h), 3)
        gh = gh + bias(params.b_h, gx)
        r, z = jnp.split(jax.nn.sigmoid(gx[..., : 2 * n] + gh[..., : 2 * n]), 2, axis=-1)
        gh_n = gh[..., 2 * n :]
        candidate = jnp.tanh(gx[..., 2 * n :] + r * gh_n)
        activations = (r, z, candidate, gh_n)
    else:
        gh, ln_h = _ln.normalize(ln_rz, matmul(h_in, params.w_h[:, : 2 * n]), 2)
        gh = gh + bias(params.b_h[: 2 * n], gx)
        r, z = jnp.split(jax.nn.sigmoid(gx[..., : 2 * n] + gh), 2, axis=-1)
        gh_n, ln_hn = _ln.normalize(ln_n, matmul(r * h_in, params.w_h[:, 2 * n :]), 1)
        candidate = jnp.tanh(gx[..., 2 * n :] + gh_n + bias(params.b_h[2 * n :], gx))
        activations = (r, z, candidate)
        if params.layer_norm:  # as the residuals of one normalisation of all three blocks
            ln_h = (
                jnp.concatenate([ln_h[0], ln_hn[0]], -1),
                jnp.concatenate([ln_h[1], ln_hn[1]], -2),
            )
    if params.layer_norm:
        activations += ((ln_x, ln_h),)
    h = like(z * carry + (1 - z) * candidate, carry)
    return h, activations


def _norms(params):
    """``ln_h`` of the r, z blocks and of the n block (``None`` without layer norm)."""
    if not params.layer_norm:
        return None, None
    n = params.hidden_size
    return _ln.sliced(params.ln_h, 0, 2 * n), _ln.sliced(params.ln_h, 2 * n, 3 * n)


# The fused gradient (see jaxrnn.rules.fused) ----------------------------------------------


def _forward(params, h, x, options):
    new, activations = gru_cell(params, h, x, options.get("recurrent_mask"))
    return new, new, activations


def _project_inputs(params, xs, options):
    return _project(params, xs)


def _forward_projected(params, h, projected, options):
    new, activations = _recurrent(params, h, projected, options.get("recurrent_mask"))
    return new, new, activations


def _backward(params, residuals, h, dh, dy, options):
    n = params.hidden_size
    r, z, candidate = residuals[:3]
    ln_x, ln_h = residuals[-1] if params.layer_norm else (None, None)
    h_in = _checks.apply_recurrent_mask(h, options.get("recurrent_mask"))
    dh = dh + dy
    dz = dh * (h - candidate) * fused.sigmoid_grad(z)
    dn = dh * (1 - z) * fused.tanh_grad(candidate)
    if params.reset_after:
        gh_n = residuals[3]
        dr = dn * gh_n * fused.sigmoid_grad(r)
        d_gh = _ln.normalize_grad(params.ln_h, ln_h, jnp.concatenate([dr, dz, dn * r], -1), 3)
        d_h_in = matmul(d_gh, params.w_h.T)
    else:
        ln_rz, ln_n = _norms(params)
        res_rz, res_n = _split_residuals(ln_h, n)
        d_gh_n = _ln.normalize_grad(ln_n, res_n, dn, 1)
        d_rh = matmul(d_gh_n, params.w_h[:, 2 * n :].T)
        dr = d_rh * h_in * fused.sigmoid_grad(r)
        d_gh = _ln.normalize_grad(ln_rz, res_rz, jnp.concatenate([dr, dz], axis=-1), 2)
        d_h_in = d_rh * r + matmul(d_gh, params.w_h[:, : 2 * n].T)
        d_gh = d_gh if ln_h is None else jnp.concatenate([d_gh, d_gh_n], axis=-1)
    d_h, d_options = fused.masked_input(h, d_h_in, options)
    dg = jnp.concatenate([dr, dz, dn], axis=-1)
    if params.layer_norm:  # the weights' cotangents are those before the normalisations
        dg = {"a": dg, "x": _ln.normalize_grad(params.ln_x, ln_x, dg, 3), "h": d_gh}
    return dh * z + d_h, dg, d_options


def _split_residuals(residuals, n):
    """The residuals of ``ln_h`` as those of the r, z blocks and of the n block."""
    if residuals is None:
        return None, None
    normed, rstd = residuals
    return (normed[..., : 2 * n], rstd[..., :2, :]), (normed[..., 2 * n :], rstd[..., 2:, :])


def _param_grads(params, xs, hs, residuals, dgs, options):
    n = params.hidden_size
    r = residuals[0]
    h_ins = fused.masked_inputs(hs, options)
    if params.layer_norm:
        da, d_pre_x, d_pre_h = dgs["a"], dgs["x"], dgs["h"]
        dw_x, _, dxs = fused.input_grads(params.w_x, xs, d_pre_x)
        db_x = fused.sum_rows(da)
    else:
        da = d_pre_h = dgs
        dw_x, db_x, dxs = fused.input_grads(params.w_x, xs, dgs)
    if params.reset_after:
        dgh = jnp.concatenate([da[..., : 2 * n], da[..., 2 * n :] * r], axis=-1)
        d_pre_h = dgh if not params.layer_norm else d_pre_h
        dw_h = fused.contract(h_ins, d_pre_h)
        db_h = fused.sum_rows(dgh)
    else:
        dgh = da
        dw_h = jnp.concatenate(
            [
                fused.contract(h_ins, d_pre_h[..., : 2 * n]),
                fused.contract(r * h_ins, d_pre_h[..., 2 * n :]),
            ],
            axis=-1,
        )
        db_h = db_x
    grads = dataclasses.replace(params, w_x=dw_x, w_h=dw_h, b_x=db_x, b_h=db_h)
    if params.layer_norm:
        ln_x, ln_h = residuals[-1]
        grads = dataclasses.replace(
            grads, ln_x=_ln.param_grads(ln_x, da), ln_h=_ln.param_grads(ln_h, dgh)
        )
    return grads, dxs


_RULE = fused.FusedGradient(_forward, _backward, _param_grads, _project_inputs, _forward_projected)
GRU = register_cell(Cell("gru", gru_init, gru_step, GRUParams, zeros_hidden, _RULE, **SIZES))
