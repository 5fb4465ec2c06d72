"""Copy after a delay (the copy-memory task: Hochreiter & Schmidhuber 1997; Arjovsky et al.
2016): recall a ``PATTERN``-bit pattern, exactly, after ``DELAY`` blank steps.

The sequence is the pattern's bits, ``DELAY`` blanks, then a go marker
followed by ``PATTERN - 1`` blanks; from the marker on, the model must output
the pattern, one bit a step. Scored by bit accuracy; guessing scores 0.5.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from benchmarks.capabilities._task import Budget, Task, accuracy, cross_entropy, time_major

PATTERN, DELAY = 7, 100
BLANK, GO = 2, 3  # token ids after the bits 0 and 1


def sequence(key, split: str):
    """One sequence of ``2 * PATTERN + DELAY`` steps."""
    del split  # one distribution
    bits = jax.random.bernoulli(key, 0.5, (PATTERN,)).astype(jnp.int32)
    xs = jnp.concatenate(
        [bits, jnp.full((DELAY,), BLANK), jnp.array([GO]), jnp.full((PATTERN - 1,), BLANK)]
    )
    targets = jnp.concatenate([jnp.zeros((PATTERN + DELAY,), jnp.int32), bits])
    weights = jnp.concatenate([jnp.zeros((PATTERN + DELAY,)), jnp.ones((PATTERN,))])
    return xs.astype(jnp.int32), targets, weights


make_batch = time_major(sequence)

TASK = Task(
    name="copy",
    title="copy (delay 100)",
    description=(
        f"a {PATTERN}-bit pattern recalled after {DELAY} blank steps (bit accuracy; guessing 0.5)"
    ),
    tokens=True,
    input_size=4,
    output_size=2,
    make_batch=make_batch,
    loss=cross_entropy,
    metric=accuracy,
    metric_name="accuracy",
    chance=0.5,
    perfect=1.0,
    budget=Budget(steps=400, batch_size=32, lr=3e-3),
    quick=Budget(steps=4, batch_size=4, lr=3e-3, eval_size=8),
)
