"""PyTorch <-> jaxrnn weight conversion.

PyTorch stores ``weight_ih (G*h, d)``, ``weight_hh (G*h, h)`` and two biases
and computes ``x W_ih^T + b_ih + h W_hh^T + b_hh``. jaxrnn multiplies on the
right, so ``w_x = weight_ih.T`` and ``w_h = weight_hh.T``. Gate orders agree
(LSTM i, f, g, o; GRU r, z, n). The RNN and LSTM fold the two biases into one;
the GRU keeps both, because its reset gate multiplies ``b_hn`` alone. PyTorch's
GRU is jaxrnn's ``reset_after=True`` form. An LSTM's ``proj_size`` maps to
jaxrnn's (``w_r = weight_hr.T``); the other LSTM variants (peepholes, layer
norm, coupled gates, cell clipping) and the layer-normalised GRU have no
PyTorch module. Conversion reads the tensors of a live module; nothing is ever
unpickled.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from jaxrnn import _checks
from jaxrnn.cells.gru import GRUParams
from jaxrnn.cells.lstm import LSTMParams
from jaxrnn.cells.rnn import RNNParams


def _torch(function: str):
    """PyTorch, imported on first use; without it, an error that names the extra to install."""
    try:
        import torch
    except ImportError as error:
        raise ImportError(
            f"jaxrnn.interop.{function} needs PyTorch, which is not installed: "
            'pip install "jaxrnn[torch]"'
        ) from error
    return torch


def _array(tensor, dtype):
    value = tensor.detach().cpu()
    if dtype is None:
        dtype = jnp.dtype(str(value.dtype).removeprefix("torch."))
    return jnp.asarray(value.double().numpy(), dtype)


def _params(kind, get, dtype, nonlinearity="tanh"):
    """Builds params from ``get(name)``, which returns a tensor or ``None``."""
    w_x = _array(get("weight_ih"), dtype).T
    w_h = _array(get("weight_hh"), dtype).T
    b_ih, b_hh = get("bias_ih"), get("bias_hh")
    b_x = jnp.zeros(w_x.shape[-1], w_x.dtype) if b_ih is None else _array(b_ih, w_x.dtype)
    b_h = jnp.zeros(w_x.shape[-1], w_x.dtype) if b_hh is None else _array(b_hh, w_x.dtype)
    if kind == "GRU":
        return GRUParams(w_x, w_h, b_x, b_h, reset_after=True)
    if kind == "LSTM":
        w_r = get("weight_hr")
        if w_r is None:
            return LSTMParams(w_x, w_h, b_x + b_h)
        w_r = _array(w_r, w_x.dtype).T
        return LSTMParams(w_x, w_h, b_x + b_h, w_r=w_r, proj_size=w_r.shape[-1])
    return RNNParams(w_x, w_h, b_x + b_h, activation=nonlinearity)


def from_torch(module, *, dtype=None):
    """Converts a PyTorch recurrent module to jaxrnn params, exactly.

    Args:
        module: ``torch.nn.RNNCell``/``LSTMCell``/``GRUCell``, or
            ``torch.nn.RNN``/``LSTM``/``GRU`` (``batch_first`` does not matter;
            an LSTM's ``proj_size`` becomes jaxrnn's, ``w_r = weight_hr.T``).
        dtype: dtype of the result; defaults to the module's.

    Returns:
        For a cell, or a one-layer one-direction module: an :class:`RNNParams`,
        :class:`LSTMParams` or :class:`GRUParams` (GRUs with ``reset_after=True``).
        For a deeper or bidirectional module: ``layers``, a tuple with one entry
        per layer, each a tuple of params per direction (forward, then backward).

    Example:
        >>> import torch, jaxrnn
        >>> p = jaxrnn.interop.from_torch(torch.nn.GRU(3, 5))
        >>> p.w_x.shape, p.reset_after
        ((3, 15), True)
    """
    torch = _torch("from_torch")
    nn = torch.nn
    cells = {nn.RNNCell: "RNN", nn.LSTMCell: "LSTM", nn.GRUCell: "GRU"}
    layers = {nn.RNN: "RNN", nn.LSTM: "LSTM", nn.GRU: "GRU"}
    kind = cells.get(type(module)) or layers.get(type(module))
    if kind is None:
        raise TypeError(
            "module: expected torch.nn.RNN/LSTM/GRU or RNNCell/LSTMCell/GRUCell, "
            f"got {type(module).__name__}"
        )
    meta = [name for name, p in module.named_parameters() if p.is_meta]
    if meta:
        raise ValueError(
            f"module: its parameters ({meta[0]}, ...) are on the meta device and hold no "
            "values; materialise them first, e.g. module.to_empty(device='cpu') and then "
            "load or initialise the weights"
        )
    nonlinearity = getattr(module, "nonlinearity", "tanh")
    if type(module) in cells:
        return _params(kind, lambda name: getattr(module, name, None), dtype, nonlinearity)

    directions = ("", "_reverse") if module.bidirectional else ("",)
    stack = tuple(
        tuple(
            _params(
                kind,
                lambda name, s=f"_l{k}{d}": getattr(module, name + s, None),
                dtype,
                nonlinearity,
            )
            for d in directions
        )
        for k in range(module.num_layers)
    )
    if len(stack) == 1 and len(stack[0]) == 1:
        return stack[0][0]
    return stack


def to_torch(params):
    """Builds the equivalent PyTorch module (time-major, ``batch_first=False``).

    Every layer and direction is checked against what one PyTorch module can
    hold: one cell type, one nonlinearity, one size, one dtype and one
    ``proj_size`` throughout, the same number of directions in every layer, and
    each layer reading the previous layer's outputs. Anything else is refused,
    naming the layer (``layers[1][0]: ...``).

    Args:
        params: an :class:`RNNParams`, :class:`LSTMParams` or :class:`GRUParams`
            (the GRU must have ``reset_after=True``: PyTorch has no other form;
            the LSTM may have ``proj_size`` but no other variant),
            or ``layers`` as returned by :func:`from_torch`.

    Returns:
        A ``torch.nn.RNN``/``LSTM``/``GRU`` in float32 or float64 (the params'
        dtype; other float types become float32) whose outputs equal jaxrnn's.
        The RNN and LSTM bias goes to ``bias_ih``; ``bias_hh`` is zero.
    """
    torch = _torch("to_torch")
    single = not _checks.is_sequence(params)
    layers = ((params,),) if single else params
    first = _check_layers(layers, single)
    kwargs = {"nonlinearity": first.activation} if isinstance(first, RNNParams) else {}
    if isinstance(first, LSTMParams) and first.proj_size:
        kwargs["proj_size"] = first.proj_size
    dtype = torch.float64 if first.w_x.dtype == jnp.float64 else torch.float32
    module = getattr(torch.nn, _KINDS[type(first)])(
        first.input_size,
        first.hidden_size,
        num_layers=len(layers),
        bidirectional=len(layers[0]) == 2,
        dtype=dtype,
        **kwargs,
    )

    def tensor(a):
        return torch.from_numpy(np.asarray(a, np.float64)).to(dtype)

    with torch.no_grad():
        for k, layer in enumerate(layers):
            for p, suffix in zip(layer, ("", "_reverse"), strict=False):
                s = f"_l{k}{suffix}"
                getattr(module, "weight_ih" + s).copy_(tensor(p.w_x.T))
                getattr(module, "weight_hh" + s).copy_(tensor(p.w_h.T))
                if isinstance(p, GRUParams):
                    getattr(module, "bias_ih" + s).copy_(tensor(p.b_x))
                    getattr(module, "bias_hh" + s).copy_(tensor(p.b_h))
                else:
                    getattr(module, "bias_ih" + s).copy_(tensor(p.b))
                    getattr(module, "bias_hh" + s).zero_()
                if isinstance(p, LSTMParams) and p.proj_size:
                    getattr(module, "weight_hr" + s).copy_(tensor(p.w_r.T))
    return module


#: The PyTorch module of each params type.
_KINDS = {RNNParams: "RNN", LSTMParams: "LSTM", GRUParams: "GRU"}

# The variants with no PyTorch form, by params type: (option, its default).
_NO_TORCH_FORM = {
    LSTMParams: (
        ("peephole", False),
        ("layer_norm", False),
        ("coupled", False),
        ("cell_clip", None),
    ),
    GRUParams: (("layer_norm", False),),
}


def _check_layers(layers, single):
    """The first params of ``layers``, once every layer and direction fits one PyTorch module."""
    if not layers:
        raise ValueError("layers: expected at least one layer, got none")
    for k, layer in enumerate(layers):
        if not _checks.is_sequence(layer) or len(layer) not in (1, 2):
            raise ValueError(
                f"layers[{k}]: expected a tuple of 1 or 2 params (one per direction), got "
                f"{type(layer).__name__}"
                + (f" of {len(layer)}" if _checks.is_sequence(layer) else "")
            )
        if len(layer) != len(layers[0]):
            raise ValueError(
                f"layers[{k}]: has {len(layer)} direction(s) but layers[0] has {len(layers[0])}; "
                "a PyTorch module has the same number in every layer"
            )
    first = layers[0][0]
    if type(first) not in _KINDS:
        raise TypeError(
            f"params: expected jaxrnn RNNParams/LSTMParams/GRUParams or layers of them, "
            f"got {type(first).__name__}"
        )
    directions = len(layers[0])
    for k, layer in enumerate(layers):
        for j, p in enumerate(layer):
            where = "params" if single else f"layers[{k}][{j}]"
            _check_one(p, first, where, k, directions)
    return first


def _check_one(p, first, where, k, directions):
    """One layer's direction against the module's first: what PyTorch cannot express is refused."""
    if type(p) is not type(first):
        raise TypeError(
            f"{where}: expected {type(first).__name__} like layers[0][0], got {type(p).__name__}; "
            "a PyTorch module has one cell type"
        )
    p.check()
    for option, default in _NO_TORCH_FORM.get(type(p), ()):
        if getattr(p, option) != default:
            raise ValueError(
                f"{where}: {option}={getattr(p, option)!r} has no PyTorch equivalent "
                f"(torch.nn.{_KINDS[type(p)]} has no {option}); only {option}={default!r} converts"
            )
    if isinstance(p, GRUParams) and not p.reset_after:
        raise ValueError(
            f"{where}: PyTorch's GRU is the reset_after=True form; got reset_after=False, "
            "which has no PyTorch equivalent"
        )
    same = {
        "activation": lambda q: getattr(q, "activation", None),
        "proj_size": lambda q: getattr(q, "proj_size", 0),
        "hidden_size": lambda q: q.hidden_size,
        "dtype": lambda q: jnp.dtype(q.w_x.dtype).name,
    }
    for name, read in same.items():
        if read(p) != read(first):
            raise ValueError(
                f"{where}: {name} {read(p)!r} differs from layers[0][0]'s {read(first)!r}; "
                f"a PyTorch module has one {name} in every layer and direction"
            )
    output = getattr(first, "output_size", first.hidden_size)
    expected = first.input_size if k == 0 else output * directions
    if p.input_size != expected:
        why = (
            "as layers[0][0]" if k == 0 else f"the previous layer's {directions} x {output} outputs"
        )
        raise ValueError(
            f"{where}: input size {p.input_size}, expected {expected} ({why}); in a PyTorch "
            "module each layer reads the one below it"
        )
