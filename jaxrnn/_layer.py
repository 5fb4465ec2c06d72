"""What the NNX and Linen sequence layers share: cell kinds and the batch-major call."""

from __future__ import annotations

import jax.numpy as jnp

from jaxrnn import _checks
from jaxrnn._gru import gru_init, gru_step
from jaxrnn._lstm import lstm_init, lstm_step
from jaxrnn._rnn import rnn_init, rnn_step
from jaxrnn._stack import _check_rate, stack_scan

# kind -> (init, step)
CELLS = {"rnn": (rnn_init, rnn_step), "lstm": (lstm_init, lstm_step), "gru": (gru_init, gru_step)}


# kind -> the cell options its init takes, with their defaults
OPTIONS = {
    "rnn": {"activation": "tanh", "dtype": jnp.float32},
    "lstm": {"forget_bias": 1.0, "dtype": jnp.float32},
    "gru": {"reset_after": False, "dtype": jnp.float32},
}


def cell_options(kind, given: dict, owner: str) -> dict:
    """``given`` over the defaults of ``kind``; an unknown option is a ``TypeError``."""
    unknown = sorted(set(given) - set(OPTIONS[kind]))
    if unknown:
        raise TypeError(
            f"{owner}: unexpected option {unknown[0]!r}; its cell options are "
            f"{', '.join(OPTIONS[kind])}"
        )
    return OPTIONS[kind] | given


def check_rates(dropout, recurrent_dropout):
    _check_rate(dropout, "dropout")
    _check_rate(recurrent_dropout, "recurrent_dropout")


def run_layers(
    step,
    layers,
    inputs,
    *,
    time_major,
    lengths,
    carry,
    dropout,
    recurrent_dropout,
    key,
    return_carry,
):
    """Calls :func:`jaxrnn.stack_scan` on ``(*batch, T, d)`` (or time-major) inputs."""
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
    carry, ys = stack_scan(
        step,
        layers,
        xs,
        carry=carry,
        lengths=lengths,
        dropout=dropout,
        recurrent_dropout=recurrent_dropout,
        key=key,
    )
    ys = ys if time_major else jnp.moveaxis(ys, 0, -2)
    return (carry, ys) if return_carry else ys
