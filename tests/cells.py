"""The built-in cells as test parameters."""

import jax
import numpy as np

import jaxrnn
from tests import reference

# test case -> (registered cell, NumPy reference, init options)
VARIANTS = {
    "rnn_tanh": ("rnn", reference.rnn, {"activation": "tanh"}),
    "rnn_relu": ("rnn", reference.rnn, {"activation": "relu"}),
    "lstm": ("lstm", reference.lstm, {}),
    "gru": ("gru", reference.gru, {}),
    "gru_reset_after": ("gru", reference.gru, {"reset_after": True}),
}
# test case -> (init, step, NumPy reference, init options), the cells looked up by name
CELLS = {
    case: (jaxrnn.get_cell(name).init, jaxrnn.get_cell(name).step, ref, options)
    for case, (name, ref, options) in VARIANTS.items()
}


def make(name, key, d, h, **extra):
    """(params, step, reference) with distinct random biases, so every bias path counts."""
    init, step, ref, options = CELLS[name]
    params = init(key, d, h, **options, **extra)
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.fold_in(key, 1), len(leaves))
    leaves = [
        a + (0.3 * jax.random.normal(k, a.shape)).astype(a.dtype) if a.ndim == 1 else a
        for a, k in zip(leaves, keys, strict=True)
    ]
    return jax.tree.unflatten(tree, leaves), step, ref


def numpy_carry(carry):
    if isinstance(carry, jaxrnn.LSTMState):
        return (np.asarray(carry.h), np.asarray(carry.c))
    return np.asarray(carry)


def random_carry(params, key, batch):
    """A non-zero carry, so the recurrent path matters from step one."""
    zeros = jaxrnn.initial_carry(params, batch)
    leaves, tree = jax.tree.flatten(zeros)
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(
        tree,
        [0.5 * jax.random.normal(k, a.shape, a.dtype) for a, k in zip(leaves, keys, strict=True)],
    )
