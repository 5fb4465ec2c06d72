"""Selective copying (Gu & Dao 2023, Mamba §4.1): reproduce, in order, a few data tokens
scattered among noise.

``NUM_TOKENS`` data tokens (from a vocabulary of ``VOCAB``) sit at random
positions among ``SPAN`` steps otherwise filled with a noise token; then come
``NUM_TOKENS`` marker steps, at which the model must output the data tokens in
the order they appeared. Where the tokens sit changes from sequence to
sequence, so a recurrence whose dynamics do not depend on the input (a
time-invariant one) cannot tell what to keep; a selective one can. Scored by
the accuracy of the tokens output; guessing scores ``1 / VOCAB``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from benchmarks.capabilities._task import Budget, Task, accuracy, cross_entropy, time_major

VOCAB, NUM_TOKENS, SPAN = 8, 8, 64
NOISE, MARKER = VOCAB, VOCAB + 1  # token ids after the data tokens


def sequence(key, split: str):
    """One sequence: ``SPAN`` steps of noise and data, then ``NUM_TOKENS`` markers."""
    del split  # one distribution
    k_where, k_what = jax.random.split(key)
    where = jnp.sort(jax.random.permutation(k_where, SPAN)[:NUM_TOKENS])
    what = jax.random.randint(k_what, (NUM_TOKENS,), 0, VOCAB)
    span = jnp.full((SPAN,), NOISE).at[where].set(what)
    xs = jnp.concatenate([span, jnp.full((NUM_TOKENS,), MARKER)])
    targets = jnp.concatenate([jnp.zeros((SPAN,), jnp.int32), what])
    weights = jnp.concatenate([jnp.zeros((SPAN,)), jnp.ones((NUM_TOKENS,))])
    return xs.astype(jnp.int32), targets.astype(jnp.int32), weights


make_batch = time_major(sequence)

TASK = Task(
    name="selective-copy",
    title="selective copy",
    description=(
        f"{NUM_TOKENS} tokens of {VOCAB} scattered over {SPAN} noise steps, recalled in "
        f"order (token accuracy; guessing {1 / VOCAB:.3f})"
    ),
    tokens=True,
    input_size=VOCAB + 2,
    output_size=VOCAB,
    make_batch=make_batch,
    loss=cross_entropy,
    metric=accuracy,
    metric_name="accuracy",
    chance=1 / VOCAB,
    perfect=1.0,
    budget=Budget(steps=600, batch_size=32, lr=3e-3),
    quick=Budget(steps=4, batch_size=4, lr=3e-3, eval_size=8),
)
