"""PyTorch <-> jaxrnn weight conversion.

PyTorch stores ``weight_ih (G*h, d)``, ``weight_hh (G*h, h)`` and two biases
and computes ``x W_ih^T + b_ih + h W_hh^T + b_hh``. jaxrnn multiplies on the
right, so ``w_x = weight_ih.T`` and ``w_h = weight_hh.T``. Gate orders agree
(LSTM i, f, g, o; GRU r, z, n). The RNN and LSTM fold the two biases into one;
the GRU keeps both, because its reset gate multiplies ``b_hn`` alone. PyTorch's
GRU is jaxrnn's ``reset_after=True`` form. Conversion reads the tensors of a
live module; nothing is ever unpickled.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from jaxrnn._gru import GRUParams
from jaxrnn._lstm import LSTMParams
from jaxrnn._rnn import RNNParams


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
        return LSTMParams(w_x, w_h, b_x + b_h)
    return RNNParams(w_x, w_h, b_x + b_h, activation=nonlinearity)


def from_torch(module, *, dtype=None):
    """Converts a PyTorch recurrent module to jaxrnn params, exactly.

    Args:
        module: ``torch.nn.RNNCell``/``LSTMCell``/``GRUCell``, or
            ``torch.nn.RNN``/``LSTM``/``GRU`` (``batch_first`` does not matter;
            LSTM ``proj_size`` is not supported).
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
    import torch

    nn = torch.nn
    cells = {nn.RNNCell: "RNN", nn.LSTMCell: "LSTM", nn.GRUCell: "GRU"}
    layers = {nn.RNN: "RNN", nn.LSTM: "LSTM", nn.GRU: "GRU"}
    kind = cells.get(type(module)) or layers.get(type(module))
    if kind is None:
        raise TypeError(
            "module: expected torch.nn.RNN/LSTM/GRU or RNNCell/LSTMCell/GRUCell, "
            f"got {type(module).__name__}"
        )
    nonlinearity = getattr(module, "nonlinearity", "tanh")
    if type(module) in cells:
        return _params(kind, lambda name: getattr(module, name, None), dtype, nonlinearity)

    if getattr(module, "proj_size", 0):
        raise ValueError(f"module: LSTM proj_size must be 0, got {module.proj_size}")
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

    Args:
        params: an :class:`RNNParams`, :class:`LSTMParams` or :class:`GRUParams`
            (the GRU must have ``reset_after=True``: PyTorch has no other form),
            or ``layers`` as returned by :func:`from_torch`.

    Returns:
        A ``torch.nn.RNN``/``LSTM``/``GRU`` in float32 or float64 (the params'
        dtype; other float types become float32) whose outputs equal jaxrnn's.
        The RNN and LSTM bias goes to ``bias_ih``; ``bias_hh`` is zero.
    """
    import torch

    layers = params if isinstance(params, tuple) else ((params,),)
    first = layers[0][0]
    types = {RNNParams: torch.nn.RNN, LSTMParams: torch.nn.LSTM, GRUParams: torch.nn.GRU}
    if type(first) not in types:
        raise TypeError(
            f"params: expected jaxrnn RNNParams/LSTMParams/GRUParams or layers of them, "
            f"got {type(first).__name__}"
        )
    if isinstance(first, GRUParams) and not first.reset_after:
        raise ValueError(
            "params: PyTorch's GRU is the reset_after=True form; got reset_after=False, "
            "which has no PyTorch equivalent"
        )
    kwargs = {"nonlinearity": first.activation} if isinstance(first, RNNParams) else {}
    dtype = torch.float64 if first.w_x.dtype == jnp.float64 else torch.float32
    module = types[type(first)](
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
    return module
