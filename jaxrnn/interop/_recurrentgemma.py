"""RecurrentGemma layers -> jaxrnn params, exactly.

RecurrentGemma's ``RGLRU`` keeps each gate as a ``BlockDiagonalLinear`` with
``w (heads, k, k)`` and ``b (heads, k)``, and the decay parameter as
``a_param (h,)``. jaxrnn keeps the same blocks in the same layout, the biases
flattened to ``(h,)`` (head-major, as RecurrentGemma flattens its outputs).
Its ``RecurrentBlock`` adds three ``Dense`` layers (``kernel (in, out)``, the
right-multiplied layout here) and a ``Conv1D`` whose ``w (K, L)`` has its last
row on the current input, as ``w_conv`` has.
RecurrentGemma is never imported: the conversion reads plain arrays.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax.numpy as jnp

from jaxrnn.cells.hawk import HawkParams
from jaxrnn.cells.rglru import RGLRUParams


def from_recurrentgemma(variables) -> RGLRUParams | HawkParams:
    """Converts the variables of RecurrentGemma's ``RGLRU`` or ``RecurrentBlock``, exactly.

    * ``RGLRU``: an :class:`jaxrnn.RGLRUParams` (no input projection, ``c = 8``).
      ``jaxrnn.scan(jaxrnn.rglru_step, params, xs, resets=segment_pos == 0)`` over
      time-major ``xs (T, B, h)`` equals ``RGLRU(width=h, num_heads=n).apply(variables,
      x, segment_pos)`` over the batch-major ``x (B, T, h)``; its cache is the final
      carry's ``h``.
    * ``RecurrentBlock``: an :class:`jaxrnn.HawkParams`, for :func:`jaxrnn.hawk_step`
      in the same way; its cache is the final carry's ``h`` (``rg_lru_state``) and
      ``window`` (``conv1d_state``).

    A first step with ``segment_pos == 0`` needs no reset: the zero carry starts
    a segment (see :class:`jaxrnn.rules.SegmentState`). A cache with
    ``segment_pos > 0`` continues as a carry with ``started = 1``. The complex
    RG-LRU (``only_real=False``), whose ``a_imag_param`` the RG-LRU here does not
    have, is refused.

    Args:
        variables: the layer's variables, ``{"params": {...}}``, or the params
            dict itself: ``a_param``, ``a_gate`` and ``input_gate`` (each ``w``,
            ``b``) for an ``RGLRU``; ``linear_y``, ``linear_x``, ``conv_1d``,
            ``rg_lru`` and ``linear_out`` for a ``RecurrentBlock``.

    Returns:
        an :class:`jaxrnn.RGLRUParams` or :class:`jaxrnn.HawkParams`.

    Example:
        >>> import jax.numpy as jnp, jaxrnn
        >>> block = {"w": jnp.zeros((2, 3, 3)), "b": jnp.zeros((2, 3))}
        >>> p = jaxrnn.interop.from_recurrentgemma(
        ...     {"a_param": jnp.zeros(6), "a_gate": block, "input_gate": block}
        ... )
        >>> p.w_a.shape, p.b_a.shape
        ((2, 3, 3), (6,))
    """
    params = _params_of(variables)
    if "rg_lru" in params:
        return _block(params)
    return _rglru(params, "variables")


def _rglru(params, where: str) -> RGLRUParams:
    if "a_imag_param" in params:
        raise ValueError(
            f"{where}: expected the real RG-LRU (only_real=True), got one with a_imag_param"
        )
    missing = sorted({"a_param", "a_gate", "input_gate"} - set(params))
    if missing:
        raise ValueError(
            f"{where}: expected an RGLRU layer's params (a_param, a_gate, input_gate) or a "
            f"RecurrentBlock's, got keys {sorted(params)}"
        )
    a, i = params["a_gate"], params["input_gate"]
    flat = lambda b: jnp.asarray(b).reshape(-1)
    return RGLRUParams(
        w_a=jnp.asarray(a["w"]),
        b_a=flat(a["b"]),
        w_i=jnp.asarray(i["w"]),
        b_i=flat(i["b"]),
        lam=jnp.asarray(params["a_param"]),
    )


def _block(params) -> HawkParams:
    missing = sorted({"linear_y", "linear_x", "conv_1d", "linear_out"} - set(params))
    if missing:
        raise ValueError(f"variables: a RecurrentBlock's params lack {', '.join(missing)}")
    lru = _rglru(params["rg_lru"], "variables['rg_lru']")
    dense = lambda name: (jnp.asarray(params[name]["kernel"]), jnp.asarray(params[name]["bias"]))
    (w_y, b_y), (w_x, b_x), (w_out, b_out) = map(dense, ("linear_y", "linear_x", "linear_out"))
    conv = params["conv_1d"]
    return HawkParams(
        w_y=w_y, b_y=b_y, w_x=w_x, b_x=b_x,
        w_conv=jnp.asarray(conv["w"]), b_conv=jnp.asarray(conv["b"]),
        w_a=lru.w_a, b_a=lru.b_a, w_i=lru.w_i, b_i=lru.b_i, lam=lru.lam,
        w_out=w_out, b_out=b_out,
    )  # fmt: skip


def _params_of(variables) -> Mapping:
    if not isinstance(variables, Mapping):
        raise TypeError(f"variables: expected a dict of a layer's params, got {type(variables)}")
    return variables["params"] if "params" in variables else variables
