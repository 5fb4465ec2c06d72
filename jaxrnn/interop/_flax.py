"""Flax cell -> jaxrnn params, exactly.

Flax keeps one ``Dense`` (or ``Conv``) per gate, or fused ones, each as
``x @ kernel + bias``, the same right-multiplied row-vector form as jaxrnn's,
so kernels concatenate along the last axis in jaxrnn's gate order and biases
that are summed in Flax fold into one. Where they are not summed (the
candidate's recurrent bias of the GRU and MGU, which a gate multiplies) they
stay apart. Flax's GRU is jaxrnn's ``reset_after=True`` form; its ConvLSTM's
gates come in the order i, g, f, o with a +1 on the forget gate built into the
step, which jaxrnn moves into the bias.

Flax is imported only inside :func:`from_flax`; ``import jaxrnn`` never imports it.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Mapping

import jax
import jax.numpy as jnp

from jaxrnn.cells.conv_lstm import ConvLSTMParams
from jaxrnn.cells.gru import GRUParams
from jaxrnn.cells.lstm import LSTMParams
from jaxrnn.cells.mgu import MGUParams
from jaxrnn.cells.rnn import RNNParams


def from_flax(cell, params=None):
    """Converts a Flax recurrent cell to jaxrnn params, exactly.

    ``jaxrnn.scan(step, from_flax(cell, params), xs)`` over time-major ``xs``
    equals ``nn.RNN(cell)`` over the same batch-major inputs, outputs and final
    carry, where ``step`` is the cell's jaxrnn step:

    * ``SimpleCell``: :class:`jaxrnn.RNNParams`, for :func:`jaxrnn.rnn_step`;
    * ``LSTMCell``, ``OptimizedLSTMCell``: :class:`jaxrnn.LSTMParams`, :func:`jaxrnn.lstm_step`;
    * ``GRUCell``: :class:`jaxrnn.GRUParams` with ``reset_after=True``, :func:`jaxrnn.gru_step`;
    * ``MGUCell`` (Linen): :class:`jaxrnn.MGUParams`, :func:`jaxrnn.mgu_step`;
    * ``ConvLSTMCell`` (Linen): :class:`jaxrnn.ConvLSTMParams`, :func:`jaxrnn.conv_lstm_step`.

    Flax's LSTM carry ``(c, h)`` is ``jaxrnn.LSTMState(h=carry[1], c=carry[0])``.
    A cell whose computation jaxrnn has no exact form for is refused, naming the
    attribute: a ``gate_fn`` or ``activation_fn`` other than the default (a
    ``SimpleCell`` may also use ``relu``), ``residual=True``, a computation
    ``dtype`` other than the params', a ConvLSTM with strides or padding other
    than 1 and ``'SAME'``. Initialisers and ``carry_init`` do not matter.

    Args:
        cell: a Flax Linen cell (``flax.linen.SimpleCell``, ``LSTMCell``,
            ``OptimizedLSTMCell``, ``GRUCell``, ``MGUCell``, ``ConvLSTMCell``) or
            a Flax NNX cell (``flax.nnx.SimpleCell``, ``LSTMCell``,
            ``OptimizedLSTMCell``, ``GRUCell``).
        params: for a Linen cell, its parameters: the dict ``nn.RNN(cell)``
            keeps under ``params/cell`` (the whole ``variables`` are accepted
            too). For an NNX cell, ``None``: it holds its own.

    Returns:
        jaxrnn params in the dtype of Flax's parameters.

    Example:
        >>> import jax, jax.numpy as jnp, jaxrnn
        >>> from flax import linen as nn
        >>> x = jnp.ones((2, 7, 3))  # (B, T, d)
        >>> rnn = nn.RNN(nn.GRUCell(5))
        >>> variables = rnn.init(jax.random.key(0), x)
        >>> p = jaxrnn.interop.from_flax(rnn.cell, variables["params"]["cell"])
        >>> _, ys = jaxrnn.scan(jaxrnn.gru_step, p, jnp.swapaxes(x, 0, 1))
        >>> bool(jnp.allclose(jnp.swapaxes(ys, 0, 1), rnn.apply(variables, x), atol=1e-6))
        True
    """
    from flax import linen, nnx

    linen_cells = {
        linen.SimpleCell: _linen_simple,
        linen.LSTMCell: _linen_lstm,
        linen.OptimizedLSTMCell: _linen_lstm,
        linen.GRUCell: _linen_gru,
        linen.MGUCell: _linen_mgu,
        linen.ConvLSTMCell: _linen_conv_lstm,
    }
    nnx_cells = {
        getattr(nnx, name): convert
        for name, convert in (
            ("SimpleCell", _nnx_simple),
            ("LSTMCell", _nnx_lstm),
            ("OptimizedLSTMCell", _nnx_optimized_lstm),
            ("GRUCell", _nnx_gru),
        )
        if hasattr(nnx, name)
    }
    kind = type(cell)
    if kind in linen_cells:
        if params is None:
            raise ValueError(
                f"params: a Linen {kind.__name__} holds no parameters; pass its parameter "
                "dict, variables['params']['cell'] of nn.RNN(cell), got None"
            )
        return linen_cells[kind](cell, _Tree(params, f"flax.linen.{kind.__name__}"))
    if kind in nnx_cells:
        if params is not None:
            raise TypeError(
                f"params: an NNX {kind.__name__} holds its own parameters; expected None, "
                f"got {type(params).__name__}"
            )
        return nnx_cells[kind](cell)
    names = [f"flax.linen.{c.__name__}" for c in linen_cells]
    names += [f"flax.nnx.{c.__name__}" for c in nnx_cells]
    raise TypeError(
        f"cell: expected one of {', '.join(names)}, got {kind.__module__}.{kind.__name__}"
    )


class _Tree:
    """A Linen cell's parameter dict, read by path with an error that names what is missing."""

    def __init__(self, params, owner):
        if not isinstance(params, Mapping):
            raise TypeError(
                f"params: expected the parameter dict of a {owner}, got {type(params).__name__}"
            )
        # The whole variables, or params of nn.RNN, lead to the cell's own dict.
        for wrapper in ("params", "cell"):
            if set(params) == {wrapper} and isinstance(params[wrapper], Mapping):
                params = params[wrapper]
        self.params, self.owner = params, owner

    def __call__(self, *path):
        node = self.params
        for depth, name in enumerate(path):
            if not isinstance(node, Mapping) or name not in node:
                where = "/".join(path[:depth]) or "the top level"
                got = sorted(node) if isinstance(node, Mapping) else type(node).__name__
                raise ValueError(
                    f"params: expected {'/'.join(path)!r} in the parameters of a {self.owner}, "
                    f"but {where} has {got}"
                )
            node = node[name]
        return jnp.asarray(node)


def _default(cell, name):
    """The class default of attribute ``name`` (a Linen field or an NNX ``__init__`` keyword)."""
    if dataclasses.is_dataclass(cell):  # a Linen module
        return {f.name: f.default for f in dataclasses.fields(cell)}[name]
    return inspect.signature(type(cell).__init__).parameters[name].default


def _require_default(cell, *names):
    for name in names:
        value, default = getattr(cell, name), _default(cell, name)
        if value is not default and value != default:
            raise ValueError(
                f"cell.{name}: jaxrnn computes only the default ({_name(default)}) exactly, "
                f"got {_name(value)}"
            )


def _name(value):
    return getattr(value, "__name__", repr(value))


def _check_dtype(cell, params):
    dtype, params_dtype = getattr(cell, "dtype", None), jax.tree.leaves(params)[0].dtype
    if dtype is not None and jnp.dtype(dtype) != params_dtype:
        raise ValueError(
            f"cell.dtype: expected None or the params' dtype {params_dtype.name} (jaxrnn "
            f"computes in the params' dtype), got {jnp.dtype(dtype).name}"
        )


def _finish(cell, params):
    _check_dtype(cell, params)
    params.check()
    features = getattr(cell, "features", None)  # a Linen cell's size, which its params must have
    if isinstance(features, int) and features != params.hidden_size:
        raise ValueError(
            f"cell.features: the {type(cell).__name__} has features={features}, but the "
            f"params given have {params.hidden_size} units; pass the cell they came from"
        )
    return params


def _cat(*arrays):
    return jnp.concatenate(arrays, axis=-1)


# Linen ------------------------------------------------------------------------------------


def _simple_activation(cell):
    if getattr(cell, "residual", False):
        raise ValueError(
            "cell.residual: jaxrnn's RNN has no residual form; expected False, got True"
        )
    if cell.activation_fn is jax.nn.relu:
        return "relu"
    _require_default(cell, "activation_fn")
    return "tanh"


def _linen_simple(cell, get):
    activation = _simple_activation(cell)
    p = RNNParams(get("i", "kernel"), get("h", "kernel"), get("i", "bias"), activation=activation)
    return _finish(cell, p)


def _linen_lstm(cell, get):
    _require_default(cell, "gate_fn", "activation_fn")
    w_x = _cat(*(get(f"i{g}", "kernel") for g in "ifgo"))
    w_h = _cat(*(get(f"h{g}", "kernel") for g in "ifgo"))
    b = _cat(*(get(f"h{g}", "bias") for g in "ifgo"))
    return _finish(cell, LSTMParams(w_x, w_h, b))


def _linen_gru(cell, get):
    _require_default(cell, "gate_fn", "activation_fn")
    b_hn = get("hn", "bias")
    zeros = jnp.zeros_like(b_hn)
    return _finish(
        cell,
        GRUParams(
            _cat(*(get(f"i{g}", "kernel") for g in "rzn")),
            _cat(*(get(f"h{g}", "kernel") for g in "rzn")),
            _cat(*(get(f"i{g}", "bias") for g in "rzn")),
            _cat(zeros, zeros, b_hn),
            reset_after=True,
        ),
    )


def _linen_mgu(cell, get):
    _require_default(cell, "gate_fn", "activation_fn")
    w_h = _cat(get("hf", "kernel"), get("hn", "kernel"))
    # Without the reset gate Flax's hn has no bias; jaxrnn's b_h is then unused.
    b_h = get("hn", "bias") if cell.reset_gate else jnp.zeros(w_h.shape[0], w_h.dtype)
    return _finish(
        cell,
        MGUParams(
            _cat(get("if", "kernel"), get("in", "kernel")),
            w_h,
            _cat(get("if", "bias"), get("in", "bias")),
            b_h,
            reset_gate=bool(cell.reset_gate),
        ),
    )


def _linen_conv_lstm(cell, get):
    if cell.strides is not None and any(s != 1 for s in cell.strides):
        raise ValueError(f"cell.strides: jaxrnn's ConvLSTM has stride 1, got {cell.strides!r}")
    if cell.padding != "SAME":
        raise ValueError(f"cell.padding: jaxrnn's ConvLSTM pads 'SAME', got {cell.padding!r}")
    w_x, w_h = get("ih", "kernel"), get("hh", "kernel")
    if tuple(w_x.shape[:-2]) != tuple(cell.kernel_size):
        raise ValueError(
            f"params: ih/kernel has shape {tuple(w_x.shape)}, expected kernel_size "
            f"{tuple(cell.kernel_size)} on its leading axes"
        )
    if cell.use_bias:
        b = get("ih", "bias") + get("hh", "bias")
    else:
        b = jnp.zeros(w_x.shape[-1], w_x.dtype)

    def reorder(a):  # Flax's gate order i, g, f, o -> jaxrnn's i, f, g, o
        i, g, f, o = jnp.split(a, 4, axis=-1)
        return _cat(i, f, g, o)

    # Flax computes sigmoid(f + 1); jaxrnn keeps that 1 in the forget gate's bias.
    plus_one = jnp.zeros((4, w_h.shape[-2]), b.dtype).at[1].set(1).reshape(-1)
    return _finish(cell, ConvLSTMParams(reorder(w_x), reorder(w_h), reorder(b) + plus_one))


# NNX --------------------------------------------------------------------------------------


def _value(variable):
    return jnp.asarray(variable[...])


def _nnx_simple(cell):
    activation = _simple_activation(cell)
    p = RNNParams(
        _value(cell.dense_i.kernel),
        _value(cell.dense_h.kernel),
        _nnx_bias(cell.dense_i),
        activation=activation,
    )
    return _finish(cell, p)


def _nnx_bias(linear):
    if linear.bias is None:
        return jnp.zeros(linear.kernel.shape[-1], linear.kernel.dtype)
    return _value(linear.bias)


def _nnx_lstm(cell):
    _require_default(cell, "gate_fn", "activation_fn")
    names = ("i", "f_", "g", "o")
    w_x = _cat(*(_value(getattr(cell, f"i{n}").kernel) for n in names))
    w_h = _cat(*(_value(getattr(cell, f"h{n[0]}").kernel) for n in names))
    b = _cat(*(_nnx_bias(getattr(cell, f"h{n[0]}")) for n in names))
    return _finish(cell, LSTMParams(w_x, w_h, b))


def _nnx_optimized_lstm(cell):
    _require_default(cell, "gate_fn", "activation_fn")
    w_x, w_h = _value(cell.dense_i.kernel), _value(cell.dense_h.kernel)
    b = _nnx_bias(cell.dense_h) + _nnx_bias(cell.dense_i)
    return _finish(cell, LSTMParams(w_x, w_h, b))


def _nnx_gru(cell):
    _require_default(cell, "gate_fn", "activation_fn")
    # NNX's GRU has no recurrent bias: n = tanh(x W_in + b_in + r ⊙ (h W_hn)).
    b_x = _nnx_bias(cell.dense_i)
    return _finish(
        cell,
        GRUParams(
            _value(cell.dense_i.kernel),
            _value(cell.dense_h.kernel),
            b_x,
            _nnx_bias(cell.dense_h),
            reset_after=True,
        ),
    )
