"""Trace-time argument checks shared by the cells and the scan driver.

Every check runs on static shapes and dtypes only, so it costs nothing at run
time and fires under ``jax.jit`` as well as eagerly. Messages name the argument,
the expected value and the actual one.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp


def as_floating(x, name: str):
    """Returns ``x`` as an array, raising ``TypeError`` unless it is floating point."""
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(
            f"{name}: expected a floating-point array, got dtype {x.dtype}; "
            f"cast it with {name}.astype(jnp.float32)"
        )
    return x


def check_features(x, size: int, name: str) -> None:
    if x.ndim < 1 or x.shape[-1] != size:
        raise ValueError(
            f"{name}: expected feature size {size} on the last axis, got shape {tuple(x.shape)}"
        )


def check_dtype(x, dtype, name: str, what: str = "the params' dtype") -> None:
    if x.dtype != dtype:
        raise TypeError(
            f"{name}: expected dtype {jnp.dtype(dtype).name} ({what}), got {x.dtype}; "
            f"cast it with {name}.astype(jnp.{jnp.dtype(dtype).name})"
        )


def check_shape(x, shape: Sequence[int], name: str, why: str = "") -> None:
    shape = tuple(shape)
    if tuple(x.shape) != shape:
        why = f" ({why})" if why else ""
        raise ValueError(f"{name}: expected shape {shape}{why}, got {tuple(x.shape)}")


def check_step_args(x, hidden: dict, input_size: int, hidden_size: int, dtype):
    """Checks one step's input ``x`` and carry arrays ``hidden`` (name -> array).

    Returns ``x`` as a floating array. The carry must have exactly ``x``'s batch
    shape followed by ``hidden_size``; no broadcasting is implied.
    """
    x = as_floating(x, "x")
    check_features(x, input_size, "x")
    check_dtype(x, dtype, "x")
    expected = (*x.shape[:-1], hidden_size)
    for name, value in hidden.items():
        value = jnp.asarray(value) if not hasattr(value, "shape") else value
        check_shape(value, expected, name, f"x's batch shape {tuple(x.shape[:-1])} + (hidden,)")
        check_dtype(value, dtype, name)
    return x


def masked(h, mask):
    """``h * mask``, or ``h`` when there is no mask; the mask must match ``h``."""
    if mask is None:
        return h
    check_shape(mask, h.shape, "recurrent_mask", "the carry's hidden shape")
    check_dtype(mask, h.dtype, "recurrent_mask", "the carry's dtype")
    return h * mask
