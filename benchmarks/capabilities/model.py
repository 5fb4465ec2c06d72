"""The one model every cell is trained in, and the rule that sizes it.

An encoder maps each step's input to ``EMBED`` features (an embedding table for
token tasks, a linear map for real-valued inputs), a stack of ``LAYERS``
recurrent layers of the cell runs over them (:func:`jaxrnn.stack_scan`, the
library's scan rules included), and a linear readout maps every step's output
to the task's classes (or to one number). Nothing else differs between cells:
the same encoder, depth and readout, and a hidden size chosen by one rule.

The rule: each cell gets the hidden size ``h`` whose recurrent layers (the
stack alone, reading ``EMBED`` features) have the parameter count closest to
``TARGET_PARAMS``. Cells without recurrent matrices (minGRU, minLSTM, S6)
therefore get wider states than the LSTM; the table lists each model's total
parameters and its state size so that both comparisons can be read off.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

import jaxrnn

#: Width of the encoder's output, the first recurrent layer's input.
EMBED = 32
#: Recurrent layers in the stack.
LAYERS = 2
#: The recurrent layers' parameter count each cell's hidden size is chosen to be closest to.
TARGET_PARAMS = 20_000
#: The hidden sizes the rule picks from.
HIDDEN_SIZES = range(8, 513)
#: Each cell's options, fixed for every task (the others keep their defaults). S6 keeps a
#: state of 4 per channel instead of Mamba's 16: its cost grows with the state, and at 16
#: it alone would take most of the suite's time on a CPU.
CELL_OPTIONS: dict[str, dict] = {"s6": {"state_size": 4}}


def count(tree) -> int:
    """The number of array elements in a pytree (of arrays or shape structs)."""
    return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(tree))


def _layers_shape(cell: str, hidden_size: int):
    options = CELL_OPTIONS.get(cell, {})
    return jax.eval_shape(
        lambda key: jaxrnn.stack_init(key, cell, EMBED, hidden_size, num_layers=LAYERS, **options),
        jax.random.key(0),
    )


def recurrent_params(cell: str, hidden_size: int) -> int:
    """Parameters of the cell's recurrent layers at ``hidden_size`` (reading ``EMBED``)."""
    return count(_layers_shape(cell, hidden_size))


@functools.cache
def hidden_size(cell: str, target: int = TARGET_PARAMS) -> int:
    """The hidden size whose recurrent layers' parameter count is closest to ``target``
    (the smaller one on a tie), found by bisection (counts grow with ``h``).

    Example:
        >>> hidden_size("lstm"), recurrent_params("lstm", hidden_size("lstm"))
        (36, 20448)
    """
    lo, hi = HIDDEN_SIZES.start, HIDDEN_SIZES.stop - 1
    if recurrent_params(cell, hi) < target:
        return hi
    while lo < hi:  # the smallest h whose count reaches the target
        mid = (lo + hi) // 2
        if recurrent_params(cell, mid) >= target:
            hi = mid
        else:
            lo = mid + 1
    if lo > HIDDEN_SIZES.start:
        below = recurrent_params(cell, lo - 1)
        if target - below <= recurrent_params(cell, lo) - target:
            return lo - 1
    return lo


def state_size(cell: str, h: int) -> int:
    """Numbers in the stack's carry for one sequence (what the cells remember)."""
    layers = _layers_shape(cell, h)
    carry = jax.eval_shape(lambda layers: jaxrnn.initial_carry(layers), layers)
    return count(carry)


def init(key, cell: str, h: int, *, input_size: int, output_size: int, tokens: bool):
    """The model's params: ``encoder``, ``layers`` (the stack) and ``readout``."""
    k_enc, k_cell, k_out = jax.random.split(key, 3)
    layers = jaxrnn.stack_init(
        k_cell, cell, EMBED, h, num_layers=LAYERS, **CELL_OPTIONS.get(cell, {})
    )
    width = _width(cell, layers)
    if tokens:
        encoder = {"table": jax.random.normal(k_enc, (input_size, EMBED)) / math.sqrt(EMBED)}
    else:
        encoder = {
            "w": jax.random.normal(k_enc, (input_size, EMBED)) / math.sqrt(input_size),
            "b": jnp.zeros((EMBED,)),
        }
    readout = {
        "w": jax.random.normal(k_out, (width, output_size)) / math.sqrt(width),
        "b": jnp.zeros((output_size,)),
    }
    return {"encoder": encoder, "layers": layers, "readout": readout}


def _width(cell: str, layers) -> int:
    xs = jax.ShapeDtypeStruct((1, 1, EMBED), jnp.float32)
    _, ys = jax.eval_shape(lambda xs: jaxrnn.stack_scan(cell, layers, xs), xs)
    return ys.shape[-1]


def apply(cell: str, params, xs):
    """Outputs at every step: ``(T, B, output_size)`` from tokens ``(T, B)`` or features
    ``(T, B, input_size)``."""
    encoder = params["encoder"]
    if "table" in encoder:
        features = encoder["table"][xs]
    else:
        features = _affine(xs, encoder["w"], encoder["b"])
    _, ys = jaxrnn.stack_scan(cell, params["layers"], features)
    return _affine(ys, params["readout"]["w"], params["readout"]["b"])


def _affine(xs, w, b):
    return xs @ w + jnp.broadcast_to(b, (*xs.shape[:-1], b.shape[-1]))
