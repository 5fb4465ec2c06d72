"""The ``xlstm`` package's sLSTM cell -> jaxrnn params.

The package's ``sLSTMCell`` takes the gates' pre-activations ``W x`` as its
input (its layer computes them with head-wise projections and a convolution),
laid out as jaxrnn's: gates i, f, z, o, each block of ``h`` units head-major
(its ``input_shape="BSGNH"``, the default). Its backend-independent weights are
``recurrent_kernel (K, s, 4, s)`` (head, input unit, gate, output unit) and
``bias (K, 4, s)``; jaxrnn's ``w_h`` is the first reshaped to ``(K, s, 4s)`` and
``b`` the second with gates before heads. PyTorch is imported only inside.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from jaxrnn import _checks
from jaxrnn.cells.slstm import SLSTMParams


def _array(tensor, dtype):
    value = tensor.detach().cpu()
    if dtype is None:
        dtype = jnp.dtype(str(value.dtype).removeprefix("torch."))
    return jnp.asarray(value.double().numpy(), dtype)


def slstm_arrays(recurrent_kernel, bias):
    """``(w_h, b)`` from the package's external ``recurrent_kernel (K, s, 4, s)`` and
    ``bias (K, 4, s)`` (NumPy arrays or anything ``np.asarray`` takes)."""
    r, b = np.asarray(recurrent_kernel), np.asarray(bias)
    k, s = r.shape[:2]
    return r.reshape(k, s, 4 * s), b.transpose(1, 0, 2).reshape(-1)


def from_xlstm(cell, *, w_x=None, dtype=None):
    """Converts the ``xlstm`` package's ``sLSTMCell`` to :class:`jaxrnn.SLSTMParams`, exactly.

    The package's cell reads pre-activations, so by default the result reads
    them too: ``w_x`` is the ``(4h, 4h)`` identity and ``jaxrnn.scan`` of
    :func:`jaxrnn.slstm_step` on the package's input (time-major) gives the
    package's outputs, both from the zero state. Give ``w_x (d, 4h)`` to fold an
    input projection of your own in instead.

    Args:
        cell: an ``xlstm`` ``sLSTMCell`` with ``function="slstm"`` (the ``vanilla``
            backend runs on a CPU; the weights read the same from any backend).
        w_x: optional input weights ``(d, 4h)``; default the identity.
        dtype: dtype of the result; defaults to the cell's.

    Returns:
        An :class:`jaxrnn.SLSTMParams` with ``num_heads`` the cell's.

    Example:
        >>> import jaxrnn
        >>> from xlstm.blocks.slstm.cell import sLSTMCell, sLSTMCellConfig
        >>> cell = sLSTMCell(sLSTMCellConfig(hidden_size=8, num_heads=2, backend="vanilla"))
        >>> p = jaxrnn.interop.from_xlstm(cell)
        >>> p.w_x.shape, p.w_h.shape, p.num_heads
        ((32, 32), (2, 4, 16), 2)
    """
    config = getattr(cell, "config", None)
    if config is None or not hasattr(cell, "recurrent_kernel") or not hasattr(cell, "bias"):
        raise TypeError(f"cell: expected an xlstm sLSTMCell, got {type(cell).__name__}")
    if getattr(config, "function", None) != "slstm":
        raise ValueError(
            f"cell: expected an sLSTM (config.function='slstm'), got {config.function!r}"
        )
    if dtype is not None:
        dtype = _checks.float_dtype(dtype)
    r, b = cell.recurrent_kernel[:], cell.bias[:]
    w_h, bias = slstm_arrays(_array(r, dtype), _array(b, dtype))
    w_h, bias = jnp.asarray(w_h), jnp.asarray(bias)
    h = bias.shape[0] // 4
    if w_x is None:
        w_x = jnp.eye(4 * h, dtype=bias.dtype)
    else:
        w_x = jnp.asarray(w_x, bias.dtype)
        _checks.check_shape(w_x, (w_x.shape[0], 4 * h), "w_x", "(d, 4 * hidden_size)")
    return SLSTMParams(w_x=w_x, w_h=w_h, b=bias)
