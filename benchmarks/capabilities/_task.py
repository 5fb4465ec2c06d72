"""What a capability task is: its generator, loss, metric, the metric's reference points,
and the training budget every cell gets on it."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp


class Batch(NamedTuple):
    """One batch of a task, time-major.

    Attributes:
        xs: the inputs, tokens ``(T, B)`` (int32) or features ``(T, B, F)``.
        targets: what each step should output, classes ``(T, B)`` (int32) or values
            ``(T, B)`` (float32); only the weighted steps matter.
        weights: ``(T, B)``, 1 at the steps the loss and the metric read, 0 elsewhere.
    """

    xs: jax.Array
    targets: jax.Array
    weights: jax.Array


@dataclasses.dataclass(frozen=True)
class Budget:
    """What every cell gets on a task: Adam at ``lr`` for ``steps`` steps of ``batch_size``
    sequences (gradients clipped to global norm 1), then one evaluation on ``eval_size``
    test sequences."""

    steps: int
    batch_size: int
    lr: float
    eval_size: int = 256


@dataclasses.dataclass(frozen=True)
class Task:
    """A synthetic task.

    Attributes:
        name: the name ``--tasks`` takes, e.g. ``"parity"``.
        title: the column header of the table and the heat map.
        description: one line: what is learned and how it is measured.
        tokens: whether ``xs`` are tokens (embedded) or features (a linear map).
        input_size: the token vocabulary, or the features per step.
        output_size: classes (or 1 for a regression).
        make_batch: ``make_batch(key, batch_size, split) -> Batch``, ``split`` one of
            ``"train"`` and ``"test"`` (whose lengths may differ); a pure function of its key.
        loss: ``loss(outputs, batch) -> scalar``, ``outputs`` being ``(T, B, output_size)``.
        metric: ``metric(outputs, batch) -> scalar``, the figure the table reports.
        metric_name: what the metric is, e.g. ``"accuracy"``.
        chance: the metric of a model that learned nothing from the sequence (guessing, or
            predicting the mean), in expectation.
        perfect: the metric of a perfect model.
        constant: for a regression, the constant a model that learned nothing predicts;
            its metric on the test set itself is then the chance level the verdicts use
            (a finite test set's differs from ``chance``). ``None``: use ``chance``.
        budget: the default run's budget.
        quick: the ``--quick`` run's budget (a smoke test, not a result).
    """

    name: str
    title: str
    description: str
    tokens: bool
    input_size: int
    output_size: int
    make_batch: Callable[..., Batch]
    loss: Callable[[jax.Array, Batch], jax.Array]
    metric: Callable[[jax.Array, Batch], jax.Array]
    metric_name: str
    chance: float
    perfect: float
    budget: Budget
    quick: Budget
    constant: float | None = None

    def skill(self, value: float, chance: float | None = None) -> float:
        """Where ``value`` lies from ``chance`` (default: :attr:`chance`; 0) to perfect (1),
        clipped to ``[0, 1]``."""
        chance = self.chance if chance is None else chance
        return min(max((value - chance) / (self.perfect - chance), 0.0), 1.0)


def _weighted_mean(values, weights):
    return jnp.sum(values * weights) / jnp.maximum(jnp.sum(weights), 1.0)


def cross_entropy(outputs, batch: Batch):
    """Mean cross-entropy of the weighted steps' class logits."""
    log_p = jax.nn.log_softmax(outputs.astype(jnp.float32))
    picked = jnp.take_along_axis(log_p, batch.targets[..., None], axis=-1)[..., 0]
    return -_weighted_mean(picked, batch.weights)


def accuracy(outputs, batch: Batch):
    """Share of the weighted steps whose most likely class is the target."""
    hits = (jnp.argmax(outputs, axis=-1) == batch.targets).astype(jnp.float32)
    return _weighted_mean(hits, batch.weights)


def squared_error(outputs, batch: Batch):
    """Mean squared error of the weighted steps' single output."""
    return _weighted_mean((outputs[..., 0] - batch.targets) ** 2, batch.weights)


def time_major(fn):
    """``fn(key) -> (xs, targets, weights)`` of one sequence, made a batch ``make_batch``."""

    def make(key, batch_size: int, *args):
        keys = jax.random.split(key, batch_size)
        per_sequence = jax.vmap(lambda k: fn(k, *args))(keys)
        return Batch(*(jnp.swapaxes(a, 0, 1) for a in per_sequence))

    return make
