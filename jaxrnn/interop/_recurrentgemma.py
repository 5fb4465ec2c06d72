"""RecurrentGemma layer -> jaxrnn params, exactly.

RecurrentGemma's ``RGLRU`` keeps each gate as a ``BlockDiagonalLinear`` with
``w (heads, k, k)`` and ``b (heads, k)``, and the decay parameter as
``a_param (h,)``. jaxrnn keeps the same blocks in the same layout, the biases
flattened to ``(h,)`` (head-major, as RecurrentGemma flattens its outputs).
RecurrentGemma is never imported: the conversion reads plain arrays.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax.numpy as jnp

from jaxrnn.cells.rglru import RGLRUParams


def from_recurrentgemma(variables) -> RGLRUParams:
    """Converts the variables of RecurrentGemma's ``RGLRU`` layer to jaxrnn params, exactly.

    ``jaxrnn.scan(jaxrnn.rglru_step, from_recurrentgemma(variables), xs,
    resets=segment_pos == 0)`` over time-major ``xs (T, B, h)`` equals
    ``RGLRU(width=h, num_heads=n).apply(variables, x, segment_pos)`` over the
    batch-major ``x (B, T, h)``: outputs, and its cache is the final carry's
    ``h``. A first step with ``segment_pos == 0`` needs no reset: the zero
    carry starts a segment (see :class:`jaxrnn.rules.SegmentState`). The
    layer's complex form (``only_real=False``) has a parameter ``a_imag_param``
    that the RG-LRU here does not, and is refused.

    Args:
        variables: the layer's variables, ``{"params": {...}}``, or the params
            dict itself: ``a_param``, ``a_gate`` and ``input_gate`` (each ``w``, ``b``).

    Returns:
        an :class:`jaxrnn.RGLRUParams` (no input projection; ``c = 8``, as the layer).

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
    if "a_imag_param" in params:
        raise ValueError(
            "variables: expected the real RG-LRU (only_real=True), got one with a_imag_param"
        )
    missing = sorted({"a_param", "a_gate", "input_gate"} - set(params))
    if missing:
        raise ValueError(
            f"variables: expected an RGLRU layer's params (a_param, a_gate, input_gate), "
            f"got keys {sorted(params)}"
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


def _params_of(variables) -> Mapping:
    if not isinstance(variables, Mapping):
        raise TypeError(f"variables: expected a dict of a layer's params, got {type(variables)}")
    return variables["params"] if "params" in variables else variables
