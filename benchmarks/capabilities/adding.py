"""The adding problem (Hochreiter & Schmidhuber 1997): long memory of two marked values.

Each step reads a value from ``U[0, 1]`` and a marker, 1 at one random step of
the first half and one of the second; the last step must output the sum of the
two marked values. The sequences are those of ``examples/adding.py``. Always
answering 1 scores the MSE ``1/6``, the baseline a cell that cannot carry the
first value to the end stays at. Two lengths: ``T = 100`` and ``T = 1000``.
"""

from __future__ import annotations

import jax.numpy as jnp

from benchmarks.capabilities._task import Batch, Budget, Task, squared_error
from examples.adding import BASELINE
from examples.adding import make_batch as _values_and_sums


def batch_maker(seq_len: int):
    """``make_batch(key, batch_size, split)`` of the adding problem at ``seq_len`` steps
    (the same length for training and testing); only the last step is scored."""

    def make_batch(key, batch_size: int, split: str) -> Batch:
        del split  # one distribution
        xs, sums = _values_and_sums(key, batch_size, seq_len)
        last = (jnp.arange(seq_len) == seq_len - 1)[:, None]
        targets = jnp.where(last, sums[None, :], 0.0)
        weights = jnp.broadcast_to(last, targets.shape).astype(jnp.float32)
        return Batch(xs, targets, weights)

    return make_batch


def task(seq_len: int, budget: Budget, quick: Budget) -> Task:
    return Task(
        name=f"adding-{seq_len}",
        title=f"adding T={seq_len}",
        description=(
            f"sum of the two marked values of {seq_len} (test MSE; "
            f"predicting 1 scores {BASELINE:.3f})"
        ),
        tokens=False,
        input_size=2,
        output_size=1,
        make_batch=batch_maker(seq_len),
        loss=squared_error,
        metric=squared_error,
        metric_name="MSE",
        chance=BASELINE,
        constant=1.0,
        perfect=0.0,
        budget=budget,
        quick=quick,
    )


QUICK = Budget(steps=4, batch_size=4, lr=3e-3, eval_size=8)
ADDING_100 = task(100, Budget(steps=600, batch_size=32, lr=3e-3), QUICK)
ADDING_1000 = task(1000, Budget(steps=100, batch_size=16, lr=3e-3, eval_size=128), QUICK)
