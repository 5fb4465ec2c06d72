"""Induction heads (Olsson et al. 2022; the synthetic task of Mamba §4.1 and Griffin):
predict the token that followed the previous occurrence of the current token.

A sequence of random tokens (from ``VOCAB``) holds a trigger token once at a
random position, followed by some token; the sequence's last step is the
trigger again, where the model must output the token that followed it the
first time. Trained on ``TRAIN_LEN`` steps, tested on ``TEST_LEN``, beyond
what training saw. Scored by accuracy at the last step; guessing scores
``1 / VOCAB``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from benchmarks.capabilities._task import Budget, Task, accuracy, cross_entropy, time_major

VOCAB, TRAIN_LEN, TEST_LEN = 16, 64, 256
TRIGGER = VOCAB  # the token id after the data tokens


def sequence(key, split: str):
    """One sequence: random tokens, the trigger and its successor somewhere, the trigger last."""
    length = TRAIN_LEN if split == "train" else TEST_LEN
    k_tokens, k_where = jax.random.split(key)
    xs = jax.random.randint(k_tokens, (length,), 0, VOCAB)
    where = jax.random.randint(k_where, (), 0, length - 2)  # its successor precedes the end
    xs = xs.at[where].set(TRIGGER).at[length - 1].set(TRIGGER)
    last = jnp.arange(length) == length - 1
    targets = jnp.where(last, xs[where + 1], 0)
    return xs.astype(jnp.int32), targets.astype(jnp.int32), last.astype(jnp.float32)


make_batch = time_major(sequence)

TASK = Task(
    name="induction",
    title="induction",
    description=(
        f"the token after the trigger's earlier occurrence; trained on {TRAIN_LEN} steps, "
        f"tested on {TEST_LEN} (accuracy; guessing {1 / VOCAB:.3f})"
    ),
    tokens=True,
    input_size=VOCAB + 1,
    output_size=VOCAB,
    make_batch=make_batch,
    loss=cross_entropy,
    metric=accuracy,
    metric_name="accuracy",
    chance=1 / VOCAB,
    perfect=1.0,
    budget=Budget(steps=1000, batch_size=32, lr=3e-3),
    quick=Budget(steps=4, batch_size=4, lr=3e-3, eval_size=8),
)
