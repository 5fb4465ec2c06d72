"""Parity, the simplest state-tracking task (Deletang et al. 2023; xLSTM; Merrill et al.
2024; Grazzi et al. 2024): the running parity of a bit string.

At every step the model outputs the parity (sum mod 2) of the bits read so
far. It is trained on prefixes of lengths 3 to ``TRAIN_LEN`` (every step of a
``TRAIN_LEN``-bit string from the third on is scored) and tested on prefixes of
lengths ``TRAIN_LEN`` to ``TEST_LEN`` (the steps from ``TRAIN_LEN`` on of
``TEST_LEN``-bit strings), so the score measures extrapolation to unseen
lengths. Guessing scores 0.5. A linear recurrence whose decays lie in
``(0, 1)`` cannot flip a sign at each 1, which parity needs; a nonlinear
recurrence (LSTM, sLSTM) can.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from benchmarks.capabilities._task import Budget, Task, accuracy, cross_entropy, time_major

TRAIN_LEN, TEST_LEN = 40, 256
#: The shortest prefix scored in training.
MIN_TRAIN_LEN = 3


def sequence(key, split: str):
    """One bit string, its running parities, and the weights of the scored prefixes."""
    length, first = (TRAIN_LEN, MIN_TRAIN_LEN) if split == "train" else (TEST_LEN, TRAIN_LEN)
    bits = jax.random.bernoulli(key, 0.5, (length,)).astype(jnp.int32)
    parities = jnp.cumsum(bits) % 2
    prefix_len = jnp.arange(1, length + 1)
    return bits, parities, (prefix_len >= first).astype(jnp.float32)


make_batch = time_major(sequence)

TASK = Task(
    name="parity",
    title="parity",
    description=(
        f"running parity of bits; trained on lengths {MIN_TRAIN_LEN}-{TRAIN_LEN}, "
        f"tested on {TRAIN_LEN}-{TEST_LEN} (accuracy; guessing 0.5)"
    ),
    tokens=True,
    input_size=2,
    output_size=2,
    make_batch=make_batch,
    loss=cross_entropy,
    metric=accuracy,
    metric_name="accuracy",
    chance=0.5,
    perfect=1.0,
    budget=Budget(steps=1000, batch_size=32, lr=1e-2),
    quick=Budget(steps=4, batch_size=4, lr=3e-3, eval_size=8),
)
