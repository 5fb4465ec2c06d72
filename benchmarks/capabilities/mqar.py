"""Multi-query associative recall (MQAR; Arora et al. 2023, "Zoology"; xLSTM §4.1).

A sequence lists ``NUM_PAIRS`` key-value pairs (``k1 v1 k2 v2 ...``, distinct
keys from ``NUM_KEYS``, values from ``NUM_VALUES``), then queries every key
once, in a random order; at each query the model must output that key's value.
A cell has to store all pairs in its state; a matrix memory (the mLSTM's
``C_t``) stores key-value associations directly, a vector state must squeeze
them in. Scored by the accuracy of the answers; guessing scores ``1 / NUM_VALUES``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from benchmarks.capabilities._task import Budget, Task, accuracy, cross_entropy, time_major

NUM_KEYS, NUM_VALUES, NUM_PAIRS = 16, 16, 8
#: The values' token ids follow the keys'.
VALUE_OFFSET = NUM_KEYS


def sequence(key, split: str):
    """One sequence: the pairs (``2 * NUM_PAIRS`` steps), then the queries (``NUM_PAIRS``)."""
    del split  # one distribution
    k_keys, k_values, k_order = jax.random.split(key, 3)
    keys = jax.random.permutation(k_keys, NUM_KEYS)[:NUM_PAIRS]
    values = jax.random.randint(k_values, (NUM_PAIRS,), 0, NUM_VALUES)
    order = jax.random.permutation(k_order, NUM_PAIRS)
    pairs = jnp.stack([keys, values + VALUE_OFFSET], axis=1).reshape(-1)
    xs = jnp.concatenate([pairs, keys[order]])
    targets = jnp.concatenate([jnp.zeros((2 * NUM_PAIRS,), jnp.int32), values[order]])
    weights = jnp.concatenate([jnp.zeros((2 * NUM_PAIRS,)), jnp.ones((NUM_PAIRS,))])
    return xs.astype(jnp.int32), targets.astype(jnp.int32), weights


make_batch = time_major(sequence)

TASK = Task(
    name="mqar",
    title="MQAR",
    description=(
        f"{NUM_PAIRS} key-value pairs ({NUM_KEYS} keys, {NUM_VALUES} values), then every key "
        f"queried (answer accuracy; guessing {1 / NUM_VALUES:.3f})"
    ),
    tokens=True,
    input_size=NUM_KEYS + NUM_VALUES,
    output_size=NUM_VALUES,
    make_batch=make_batch,
    loss=cross_entropy,
    metric=accuracy,
    metric_name="accuracy",
    chance=1 / NUM_VALUES,
    perfect=1.0,
    budget=Budget(steps=800, batch_size=64, lr=3e-3),
    quick=Budget(steps=4, batch_size=4, lr=3e-3, eval_size=8),
)
