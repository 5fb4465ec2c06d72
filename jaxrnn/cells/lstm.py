"""The LSTM (Hochreiter & Schmidhuber 1997) and its variants, which combine freely: a
projection (Sak et al. 2014), peepholes (Gers, Schraudolph & Schmidhuber 2002), layer
norm (Ba, Kiros & Hinton 2016), coupled gates (Greff et al. 2017) and cell clipping."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from jaxrnn import _checks, _initializers
from jaxrnn import _layer_norm as _ln
from jaxrnn._carry import LSTMState, check_lstm_state
from jaxrnn._cell import Cell, register_cell
from jaxrnn._layer_norm import LayerNormParams
from jaxrnn._params import SIZES, RecurrentWeights, bias, pytree_dataclass, static
from jaxrnn._precision import like, matmul
from jaxrnn.rules import fused


@pytree_dataclass
class LSTMParams(RecurrentWeights):
    """Parameters of an LSTM cell, gates fused along the last axis in the order i, f, g, o.

    The order is PyTorch's (``w_x = weight_ih.T``, ``w_h = weight_hh.T``; ``g`` is the candidate
    cell :math:`\\tilde C`); ``coupled=True`` drops the input gate: f, g, o. ``G`` is the number of
    gate blocks, ``h`` the cell size, ``p`` the size of ``H_t`` (``proj_size``, or ``h``).

    Attributes:
        w_x: input weights, shape ``(d, G*h)``.
        w_h: recurrent weights, shape ``(p, G*h)``.
        b: bias, shape ``(G*h,)``. PyTorch's two biases ``b_ih + b_hh`` sum into it.
        w_r: with ``proj_size``: the projection ``(h, p)``, PyTorch's ``weight_hr.T``.
        w_c: with ``peephole``: the diagonal weights ``(3h,)``, i, f, o (coupled: ``(2h,)``, f, o).
        ln_x, ln_h, ln_c: with ``layer_norm``: gain and bias of the normalisation of
            ``X_t W_x``, of ``H_{t-1} W_h`` (``(G*h,)`` each) and of ``C_t`` (``(h,)``).
        proj_size, peephole, layer_norm, coupled, cell_clip: the variant, static (see
            :func:`lstm_init`); the optional arrays are ``None`` exactly when it lacks them.
    """

    w_x: jax.Array
    w_h: jax.Array
    b: jax.Array
    w_r: jax.Array | None = None
    w_c: jax.Array | None = None
    ln_x: LayerNormParams | None = None
    ln_h: LayerNormParams | None = None
    ln_c: LayerNormParams | None = None
    proj_size: int = static(0)
    peephole: bool = static(False)
    layer_norm: bool = static(False)
    coupled: bool = static(False)
    cell_clip: float | None = static(None)

    def __post_init__(self):
        _checks.non_negative_int(self.proj_size, "proj_size")
        _checks.boolean(self.peephole, "peephole")
        _checks.boolean(self.layer_norm, "layer_norm")
        _checks.boolean(self.coupled, "coupled")
        _checks.positive_or_none(self.cell_clip, "cell_clip")

    @property
    def gates(self) -> int:
        """The number of gate blocks ``G``: 4 (i, f, g, o), or 3 (f, g, o) when coupled."""
        return 3 if self.coupled else 4

    @property
    def hidden_size(self) -> int:
        """The cell size ``h`` (of ``C_t``)."""
        return self.w_x.shape[-1] // self.gates

    @property
    def output_size(self) -> int:
        """The size ``p`` of ``H_t``, the output: ``proj_size``, or ``h`` without projection."""
        return self.w_h.shape[-2]

    def check(self):
        """Checks the fields against each other (at trace time, naming the field)."""
        for field, option in _OPTIONAL.items():
            value = getattr(self, option)
            _checks.present(
                getattr(self, field), bool(value), f"params.{field}", f"{option}={value}"
            )
        ranks = {field: len(shape) for field, shape in self._shapes(0, 0).items()}
        _checks.check_params(self, ranks, lambda: self._shapes(self.input_size, self.hidden_size))
        if self.proj_size >= self.hidden_size:
            raise ValueError(
                f"params.proj_size: expected a projection smaller than hidden_size="
                f"{self.hidden_size} (as PyTorch requires), got {self.proj_size}"
            )

    def _shapes(self, d, h):
        g, p = self.gates, self.proj_size
        shapes = {"w_x": (d, g * h), "w_h": (p or h, g * h), "b": (g * h,)}
        shapes |= {"w_r": (h, p)} if p else {}
        shapes |= {"w_c": ((g - 1) * h,)} if self.peephole else {}
        norms = zip(("ln_x", "ln_h", "ln_c"), (g * h, g * h, h), strict=True)
        for ln, size in norms if self.layer_norm else ():
            shapes |= {f"{ln}.scale": (size,), f"{ln}.bias": (size,)}
        return shapes


_OPTIONAL = {"w_r": "proj_size", "w_c": "peephole"} | dict.fromkeys(
    ("ln_x", "ln_h", "ln_c"), "layer_norm"
)


def lstm_init(
    key,
    input_size: int,
    hidden_size: int,
    *,
    forget_bias=1.0,
    dtype=jnp.float32,
    proj_size: int = 0,
    peephole: bool = False,
    layer_norm: bool = False,
    coupled: bool = False,
    cell_clip: float | None = None,
):
    """Initialises an LSTM cell, optionally one of its variants (see :func:`lstm_step`).

    The forget-gate bias starts at ``forget_bias`` (1.0, following Gers et al.
    2000 and Jozefowicz et al. 2015) so the cell remembers by default; PyTorch
    starts it at 0 (uniform), Flax and Keras at 1. All other biases are zero.

    Args:
        key: a PRNG key.
        input_size, hidden_size: ``d``, and ``h`` the size of the cell ``C_t``.
        forget_bias, dtype: the forget gate's initial bias; the params' floating-point dtype.
        proj_size: ``0 < p < h`` projects ``H_t`` (the output and the carry's
            ``h``) to ``p`` units with ``w_r`` (LeCun normal); ``w_h`` is then
            ``(p, G*h)``, each gate's block with orthonormal rows. 0: none.
        peephole, layer_norm, coupled, cell_clip: the variants of
            :func:`lstm_step`. Peepholes start at 0 (a plain LSTM at first),
            layer-norm gains at 1 and their biases at 0; ``cell_clip=None``
            clips nothing.

    Example:
        >>> import jax, jaxrnn
        >>> p = jaxrnn.lstm_init(jax.random.key(0), 3, 5)
        >>> p.w_x.shape, p.w_h.shape, p.b.shape
        ((3, 20), (5, 20), (20,))
        >>> float(p.b[5:10].mean())  # the f block
        1.0
        >>> q = jaxrnn.lstm_init(jax.random.key(0), 3, 5, proj_size=2, coupled=True)
        >>> q.w_x.shape, q.w_h.shape, q.w_r.shape, (q.hidden_size, q.output_size)
        ((3, 15), (2, 15), (5, 2), (5, 2))
    """
    _initializers.check_sizes(key, input_size, hidden_size)
    dtype = _checks.float_dtype(dtype)
    _checks.finite_number(forget_bias, "forget_bias")
    _checks.non_negative_int(proj_size, "proj_size")
    if proj_size >= hidden_size:
        raise ValueError(
            f"proj_size: expected an int in [0, hidden_size={hidden_size}) (PyTorch requires "
            f"proj_size < hidden_size), got {proj_size}"
        )
    peephole = _checks.boolean(peephole, "peephole")
    layer_norm = _checks.boolean(layer_norm, "layer_norm")
    coupled = _checks.boolean(coupled, "coupled")
    _checks.positive_or_none(cell_clip, "cell_clip")
    gates = 3 if coupled else 4
    kx, kh = jax.random.split(key)
    w_h = _initializers.recurrent_weights(kh, hidden_size, gates, dtype, rows=proj_size or None)
    kr = jax.random.fold_in(key, 1)
    w_r = _initializers.input_weights(kr, hidden_size, proj_size, 1, dtype) if proj_size else None
    b = jnp.zeros((gates, hidden_size), dtype).at[0 if coupled else 1].set(forget_bias).reshape(-1)
    norm = lambda size: _ln.layer_norm_init(size, dtype) if layer_norm else None
    return LSTMParams(
        w_x=_initializers.input_weights(kx, input_size, hidden_size, gates, dtype),
        w_h=w_h,
        b=b,
        w_r=w_r,
        w_c=jnp.zeros(((gates - 1) * hidden_size,), dtype) if peephole else None,
        ln_x=norm(gates * hidden_size),
        ln_h=norm(gates * hidden_size),
        ln_c=norm(hidden_size),
        proj_size=proj_size,
        peephole=peephole,
        layer_norm=layer_norm,
        coupled=coupled,
        cell_clip=cell_clip,
    )


def lstm_step(params: LSTMParams, carry: LSTMState, x: jax.Array, *, recurrent_mask=None):
    r"""One step of the LSTM.

    .. math::
        I_t &= \sigma(X_t W_{xi} + H_{t-1} W_{hi} + b_i) \\
        F_t &= \sigma(X_t W_{xf} + H_{t-1} W_{hf} + b_f) \\
        \tilde C_t &= \tanh(X_t W_{xc} + H_{t-1} W_{hc} + b_c) \\
        O_t &= \sigma(X_t W_{xo} + H_{t-1} W_{ho} + b_o) \\
        C_t &= F_t \odot C_{t-1} + I_t \odot \tilde C_t \\
        H_t &= O_t \odot \tanh(C_t)

    The variants of :func:`lstm_init` change them so:

    * ``peephole``: ``+ w_ci ⊙ C_{t-1}`` in ``I_t``, ``+ w_cf ⊙ C_{t-1}`` in ``F_t``
      and ``+ w_co ⊙ C_t`` (the new cell) in ``O_t``.
    * ``coupled``: :math:`I_t = 1 - F_t`; no input-gate weights.
    * ``cell_clip``: :math:`C_t` is clipped to ``[-cell_clip, cell_clip]`` right after
      its update (for the carry, the peephole and the output); no gradient where it clips.
    * ``layer_norm``: each pre-activation is ``LN_x(X_t W_x) + LN_h(H_{t-1} W_h) + b``
      (peepholes added after), each gate's block normalised on its own (epsilon
      1e-5), and :math:`H_t = O_t \odot \tanh(\mathrm{LN}_c(C_t))`; ``C_t`` is carried as is.
    * ``proj_size``: :math:`H_t = (O_t \odot \tanh(C_t)) W_r`, size ``p``.

    Args:
        params: an :class:`LSTMParams`.
        carry: an :class:`LSTMState` ``(h, c)``, ``h (*batch, p)`` and ``c (*batch, h)``.
        x: ``X_t``, shape ``(*batch, d)``.
        recurrent_mask: optional ``(*batch, p)`` multiplier on ``H_{t-1}`` where it
            enters the recurrent matmul (variational recurrent dropout).

    Returns:
        ``(LSTMState(H_t, C_t), H_t)``.

    Example:
        >>> import functools, jax, jax.numpy as jnp, jaxrnn
        >>> p = jaxrnn.lstm_init(jax.random.key(0), 3, 5)
        >>> xs = jnp.ones((7, 2, 3))  # (T, B, d)
        >>> carry = jaxrnn.initial_carry(p, batch_shape=(2,))
        >>> carry, ys = jax.lax.scan(functools.partial(jaxrnn.lstm_step, p), carry, xs)
        >>> ys.shape
        (7, 2, 5)
    """
    state, h, _ = lstm_cell(params, carry, x, recurrent_mask)
    return state, h


def lstm_cell(params: LSTMParams, carry: LSTMState, x: jax.Array, recurrent_mask=None):
    """:func:`lstm_step`, also returning the activations ``(i, f, g, o, tanh(C_t)[, extra])``.

    The one place the LSTM equations are written; the fused gradient of :func:`jaxrnn.scan`
    keeps these activations. A variant adds ``extra``, a dict: the (clipped) cell ``"c"``
    for peepholes or a clip, the normalisations' residuals ``"ln"``.
    """
    _checks.params_type(params, LSTMParams, "lstm_step")
    params.check()
    check_lstm_state(carry, "an LSTM", "(*batch, h)")
    x = _checks.check_step_args(
        x,
        {"carry.h": carry.h, "carry.c": carry.c},
        params.input_size,
        {"carry.h": params.output_size, "carry.c": params.hidden_size},
        params.w_h.dtype,
    )
    return _recurrent(params, carry, _project(params, x), recurrent_mask)


def _project(params: LSTMParams, x: jax.Array):
    """``(LN_x(X W_x), residuals)``: the part of the step that reads only the input.

    For ``x`` with any leading axes, e.g. a chunk of steps ``(k, *batch, d)``: the
    normalisation is per row, so a chunk projected at once gives each step's values.
    """
    return _ln.normalize(params.ln_x, matmul(x, params.w_x), params.gates)


def _recurrent(params: LSTMParams, carry: LSTMState, projected, recurrent_mask=None):
    """:func:`lstm_cell` from the step's ``_project(params, x)``: the rest of the step."""
    ax, ln_x = projected
    h_in = _checks.apply_recurrent_mask(carry.h, recurrent_mask)
    ah, ln_h = _ln.normalize(params.ln_h, matmul(h_in, params.w_h), params.gates)
    gates = ax + ah + bias(params.b, ax)
    blocks = jnp.split(gates, params.gates, axis=-1)
    a_i, a_f, a_g, a_o = [None, *blocks] if params.coupled else blocks
    peep = _peepholes(params, ax)
    if params.peephole:
        a_f = a_f + peep["f"] * carry.c
        a_i = None if params.coupled else a_i + peep["i"] * carry.c
    f = jax.nn.sigmoid(a_f)
    i = 1 - f if params.coupled else jax.nn.sigmoid(a_i)
    g = jnp.tanh(a_g)
    c = f * carry.c + i * g
    if params.cell_clip is not None:
        c = jnp.clip(c, -params.cell_clip, params.cell_clip)
    if params.peephole:
        a_o = a_o + peep["o"] * c
    o = jax.nn.sigmoid(a_o)
    c_out, ln_c = _ln.normalize(params.ln_c, c, 1)
    tanh_c = jnp.tanh(c_out)
    h = o * tanh_c
    if params.proj_size:
        h = matmul(h, params.w_r)
    activations = (i, f, g, o, tanh_c)
    extra = {"c": c} if params.peephole or params.cell_clip is not None else {}
    extra |= {"ln": (ln_x, ln_h, ln_c)} if params.layer_norm else {}
    state = like(LSTMState(h=h, c=c), carry)
    return state, state.h, activations + ((extra,) if extra else ())


def _peepholes(params, x):
    """The peephole vectors by gate name, at ``x``'s rank; empty without peepholes."""
    if not params.peephole:
        return {}
    names = ("f", "o") if params.coupled else ("i", "f", "o")
    parts = jnp.split(params.w_c, len(names))
    return {name: bias(w, x) for name, w in zip(names, parts, strict=True)}


# The fused gradient (see jaxrnn.rules.fused) ----------------------------------------------


def _forward(params, carry, x, options):
    return lstm_cell(params, carry, x, options.get("recurrent_mask"))


def _project_inputs(params, xs, options):
    return _project(params, xs)


def _forward_projected(params, carry, projected, options):
    return _recurrent(params, carry, projected, options.get("recurrent_mask"))


def _backward(params, residuals, carry_in, d_carry, dy, options):
    i, f, g, o, tanh_c = residuals[:5]
    extra = residuals[5] if len(residuals) > 5 else {}
    ln_x, ln_h, ln_c = extra.get("ln", (None, None, None))
    peep = _peepholes(params, dy)
    dh = d_carry.h + dy
    dm = matmul(dh, params.w_r.T) if params.proj_size else dh  # the output before projection
    d_out = dm * o * fused.tanh_grad(tanh_c)  # of LN(C_t), or of C_t
    da_o = dm * tanh_c * fused.sigmoid_grad(o)
    d_out_c = _ln.normalize_grad(params.ln_c, ln_c, d_out, 1)
    if params.peephole:
        d_out_c = d_out_c + da_o * peep["o"]
    dc = d_carry.c + d_out_c
    if params.cell_clip is not None:  # as jnp.clip: no gradient where it clips
        dc = jnp.where(jnp.abs(extra["c"]) < params.cell_clip, dc, jnp.zeros_like(dc))
    if params.coupled:
        da_f = dc * (carry_in.c - g) * fused.sigmoid_grad(f)
        da = jnp.concatenate([da_f, dc * i * fused.tanh_grad(g), da_o], axis=-1)
    else:
        da_i = dc * g * fused.sigmoid_grad(i)
        da_f = dc * carry_in.c * fused.sigmoid_grad(f)
        da = jnp.concatenate([da_i, da_f, dc * i * fused.tanh_grad(g), da_o], axis=-1)
    d_c = dc * f
    if params.peephole:
        d_c = d_c + da_f * peep["f"]
        if not params.coupled:
            d_c = d_c + da_i * peep["i"]
    da_h = _ln.normalize_grad(params.ln_h, ln_h, da, params.gates)
    d_h, d_options = fused.masked_input(carry_in.h, matmul(da_h, params.w_h.T), options)
    if not (params.proj_size or params.layer_norm):
        return LSTMState(h=d_h, c=d_c), da, d_options
    # What the weight gradients need beyond the gates' cotangent `da`.
    dg = {"a": da}
    if params.proj_size:
        dg["out"] = dh
    if params.layer_norm:
        dg["x"] = _ln.normalize_grad(params.ln_x, ln_x, da, params.gates)
        dg["h"], dg["out_c"] = da_h, d_out
    return LSTMState(h=d_h, c=d_c), dg, d_options


def _param_grads(params, xs, carries_in, residuals, dgs, options):
    h_ins = fused.masked_inputs(carries_in.h, options)
    if not (params.proj_size or params.layer_norm):
        dw_x, db, dxs = fused.input_grads(params.w_x, xs, dgs)
        dw_h = fused.contract(h_ins, dgs)
        grads = dataclasses.replace(params, w_x=dw_x, w_h=dw_h, b=db)
        da = dgs
    else:
        da = dgs["a"]
        dw_x, _, dxs = fused.input_grads(params.w_x, xs, dgs.get("x", da))
        dw_h = fused.contract(h_ins, dgs.get("h", da))
        grads = dataclasses.replace(params, w_x=dw_x, w_h=dw_h, b=fused.sum_rows(da))
    extra = residuals[5] if len(residuals) > 5 else {}
    if params.proj_size:
        o, tanh_c = residuals[3:5]
        dw_r = fused.contract(o * tanh_c, dgs["out"])
        grads = dataclasses.replace(grads, w_r=dw_r)
    if params.peephole:
        blocks = jnp.split(da, params.gates, axis=-1)
        by_gate = dict(zip(("f", "g", "o") if params.coupled else "ifgo", blocks, strict=True))
        cells = {"i": carries_in.c, "f": carries_in.c, "o": extra["c"]}
        names = ("f", "o") if params.coupled else ("i", "f", "o")
        dw_c = [fused.sum_rows(by_gate[n] * cells[n]) for n in names]
        grads = dataclasses.replace(grads, w_c=jnp.concatenate(dw_c))
    if params.layer_norm:
        ln_x, ln_h, ln_c = extra["ln"]
        grads = dataclasses.replace(
            grads,
            ln_x=_ln.param_grads(ln_x, da),
            ln_h=_ln.param_grads(ln_h, da),
            ln_c=_ln.param_grads(ln_c, dgs["out_c"]),
        )
    return grads, dxs


def _initial_carry(params, batch_shape=()):
    batch, dtype = _checks.batch_tuple(batch_shape), params.w_h.dtype
    c = jnp.zeros((*batch, params.hidden_size), dtype)
    h = c if not params.proj_size else jnp.zeros((*batch, params.output_size), dtype)
    return LSTMState(h=h, c=c)


_RULE = fused.FusedGradient(
    _forward,
    _backward,
    _param_grads,
    _project_inputs,
    _forward_projected,
    transposed=("w_h", "w_r"),
)
LSTM = register_cell(
    Cell("lstm", lstm_init, lstm_step, LSTMParams, _initial_carry, _RULE, hidden="h", **SIZES)
)
