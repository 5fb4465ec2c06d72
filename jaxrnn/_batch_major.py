"""What the NNX and Linen modules share: a stack called on batch-major sequences."""

from __future__ import annotations

import jax.numpy as jnp

from jaxrnn import _checks, _precision
from jaxrnn._cell import Cell
from jaxrnn._stack import check_recurrent_mask, stack_scan


def check_layer_options(cell: Cell, dropout, recurrent_dropout, zoneout=0.0) -> None:
    """Checks a layer's rates when it is built, and that its cell takes a recurrent mask."""
    _checks.rate(dropout, "dropout")
    _checks.rate(recurrent_dropout, "recurrent_dropout")
    _checks.rate(zoneout, "zoneout")
    if recurrent_dropout > 0:
        check_recurrent_mask(cell.accepted_step_options, f"the {cell.name!r} cell's step")


def precision(cell: Cell, dtype, param_dtype) -> tuple:
    """A module's ``dtype`` (the compute dtype, ``None`` for the params') and
    ``param_dtype`` (that of the params it initialises), with Flax's meaning:
    returns ``(dtype, init_options)``, checked when the module is built."""
    dtype, _ = _precision.policy(dtype, None)
    param_dtype = _checks.float_dtype(param_dtype, "param_dtype")
    if "dtype" in cell.options:
        return dtype, {"dtype": param_dtype}
    if param_dtype != jnp.float32:
        raise TypeError(
            f"param_dtype: the {cell.name!r} cell's init takes no dtype, so its params keep "
            f"their own; got {param_dtype.name}"
        )
    return dtype, {}


def cell_step(cell: Cell, dtype):
    """The step a cell module calls: the cell's, under the compute ``dtype`` if any."""
    return cell.step if dtype is None else _precision.with_precision(cell.step, dtype)


def cell_carry(cell: Cell, params, batch_shape, dtype):
    """A cell module's zero carry, in the policy's carry dtype under a compute ``dtype``."""
    carry = cell.initial_carry(params, batch_shape)
    if dtype is None:
        return carry
    return _precision.cast_floating(carry, _precision.policy(dtype, None)[1])


def check_inputs(cell: Cell, layers, inputs) -> None:
    """``inputs`` must have the features the first layer's params read, where the cell says."""
    input_size = cell.size_of_input(layers[0][0])
    if input_size is not None:
        _checks.check_features(_checks.as_floating(inputs, "inputs"), input_size, "inputs")


def training_rates(dropout, recurrent_dropout, zoneout) -> str:
    """The rates that need a key in training, as an error message names them."""
    if not zoneout:
        return f"dropout={dropout} and recurrent_dropout={recurrent_dropout}"
    return f"dropout={dropout}, recurrent_dropout={recurrent_dropout} and zoneout={zoneout}"


def run_layers(cell: Cell, layers, inputs, *, time_major, lengths, resets, return_carry, **options):
    """Calls :func:`jaxrnn.stack_scan` of ``cell`` on ``(*batch, T, d)`` (or time-major) inputs.

    ``resets`` is ``(*batch, T)`` (or ``(T, *batch)``), like the inputs without
    their feature axes; ``options`` go to :func:`jaxrnn.stack_scan` as they are.

    A cell with several feature axes (:attr:`jaxrnn.Cell.feature_axes`; a
    ConvLSTM: its spatial axes and channels) takes inputs ``(*batch, T,
    *spatial, d)``; ``lengths`` and ``resets`` stay per sequence and are spread
    over the spatial axes here.
    """
    inputs = _checks.as_floating(inputs, "inputs")
    features = cell.num_feature_axes(layers[0][0])
    spatial = "*spatial, " if features > 1 else ""
    layout = f"(T, *batch, {spatial}d)" if time_major else f"(*batch, T, {spatial}d)"
    if inputs.ndim < 1 + features:
        raise ValueError(f"inputs: expected shape {layout}, got {inputs.shape}")
    if features > 1 and inputs.ndim < 2 + features:
        # (B, T, L, C) with a 2-D kernel would otherwise read as (T, H, W, C).
        raise ValueError(
            f"inputs: expected shape {layout} with at least one batch axis (the cell's inputs "
            f"have {features - 1} spatial axes), got {inputs.shape}"
        )
    check_inputs(cell, layers, inputs)
    time = 0 if time_major else inputs.ndim - 1 - features
    xs = jnp.moveaxis(inputs, time, 0)
    batch, inner = xs.shape[1 : xs.ndim - features], xs.shape[xs.ndim - features : -1]
    if lengths is not None:
        lengths = jnp.asarray(lengths)
        _checks.check_shape(lengths, batch, "lengths", f"the batch axes of inputs {layout}")
        lengths = _spread(lengths, inner)
    if resets is not None:
        resets = jnp.asarray(resets)
        _checks.check_shape(
            resets,
            inputs.shape[: inputs.ndim - features],
            "resets",
            f"the axes of inputs {layout} up to T",
        )
        resets = _spread(jnp.moveaxis(resets, time, 0), inner)
    carry, ys = stack_scan(cell, layers, xs, lengths=lengths, resets=resets, **options)
    ys = jnp.moveaxis(ys, 0, time)
    return (carry, ys) if return_carry else ys


def _spread(a, inner):
    """``a`` broadcast over trailing ``inner`` (spatial) axes."""
    return jnp.broadcast_to(a.reshape(a.shape + (1,) * len(inner)), a.shape + tuple(inner))
