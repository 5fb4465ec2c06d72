"""Weight initialisation shared by the built-in cells.

* Input weights ``w_x (d, G*h)``: LeCun normal (truncated normal with variance
  ``1/d``), i.e. scaled by fan-in so that every gate's pre-activation starts
  with unit variance for unit-variance inputs.
* Recurrent weights ``w_h (h, G*h)``: one independent orthogonal ``(h, h)``
  block per gate (Saxe et al. 2014), so repeated multiplication by each block
  neither shrinks nor grows the hidden state at initialisation.
* Biases: zero (the LSTM sets its forget-gate block separately).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def check_sizes(key, input_size: int, hidden_size: int) -> None:
    """An init's arguments: a PRNG key and two positive sizes, else an error naming them."""
    is_key = isinstance(key, jax.Array) and (
        jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
        or (key.dtype == jnp.uint32 and key.shape[-1:] == (2,))
    )
    if not is_key:
        raise TypeError(f"key: expected a PRNG key such as jax.random.key(0), got {key!r}")
    for name, value in (("input_size", input_size), ("hidden_size", hidden_size)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name}: expected a positive int, got {value!r}")


def _working(dtype):
    # Draw in at least float32 (QR has no bfloat16 kernel), then cast.
    return jnp.promote_types(dtype, jnp.float32)


def input_weights(key, input_size: int, hidden_size: int, gates: int, dtype):
    init = jax.nn.initializers.lecun_normal(in_axis=0, out_axis=1)
    return init(key, (input_size, gates * hidden_size), _working(dtype)).astype(dtype)


def recurrent_weights(key, hidden_size: int, gates: int, dtype, rows: int | None = None):
    """``(rows, gates*h)``, one orthogonal block per gate; ``rows < h`` (an LSTM with a
    projection) gives each block orthonormal rows. ``rows`` defaults to ``h``."""
    init = jax.nn.initializers.orthogonal()
    shape = (hidden_size if rows is None else rows, hidden_size)
    blocks = [init(k, shape, _working(dtype)) for k in jax.random.split(key, gates)]
    return jnp.concatenate(blocks, axis=-1).astype(dtype)
