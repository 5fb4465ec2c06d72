"""What the NNX and Linen modules share: the batch-major call of a stack."""

from __future__ import annotations

import jax.numpy as jnp

from jaxrnn import _checks
from jaxrnn._stack import stack_scan


def check_rates(dropout, recurrent_dropout) -> None:
    _checks.rate(dropout, "dropout")
    _checks.rate(recurrent_dropout, "recurrent_dropout")


def run_layers(step, layers, inputs, *, time_major, lengths, resets, return_carry, **options):
    """Calls :func:`jaxrnn.stack_scan` on ``(*batch, T, d)`` (or time-major) inputs.

    ``resets`` is ``(*batch, T)`` (or ``(T, *batch)``), like the inputs without
    their feature axis; ``options`` go to :func:`jaxrnn.stack_scan` as they are.
    """
    inputs = _checks.as_floating(inputs, "inputs")
    layout = "(T, *batch, d)" if time_major else "(*batch, T, d)"
    if inputs.ndim < 2:
        raise ValueError(f"inputs: expected shape {layout}, got {inputs.shape}")
    _checks.check_features(inputs, layers[0][0].input_size, "inputs")
    xs = inputs if time_major else jnp.moveaxis(inputs, -2, 0)
    if lengths is not None:
        lengths = jnp.asarray(lengths)
        _checks.check_shape(
            lengths, xs.shape[1:-1], "lengths", f"the batch axes of inputs {layout}"
        )
    if resets is not None:
        resets = jnp.asarray(resets)
        _checks.check_shape(
            resets, inputs.shape[:-1], "resets", f"the axes of inputs {layout} but the last"
        )
        resets = resets if time_major else jnp.moveaxis(resets, -1, 0)
    carry, ys = stack_scan(step, layers, xs, lengths=lengths, resets=resets, **options)
    ys = ys if time_major else jnp.moveaxis(ys, 0, -2)
    return (carry, ys) if return_carry else ys
