"""The scan rule: the contract between :func:`jaxrnn.scan` and a cell's faster way through time."""

from __future__ import annotations

import abc
from typing import Any

import jax


class ScanRule(abc.ABC):
    """A cell's own way to run its step over a whole sequence, with the step's values and gradients.

    :func:`jaxrnn.scan` runs ``lax.scan`` of a step unless the step's cell
    (:class:`jaxrnn.Cell`) registered a rule: then it calls the rule once with
    the whole sequence, after it has checked the arguments and turned
    ``lengths`` and ``resets`` into the masks ``keep`` and ``reset``. A rule
    must compute exactly what this masked loop computes, up to rounding, values
    and gradients alike (``tests/conformance`` holds every built-in rule to it)::

        for t in (reversed(range(T)) if reverse else range(T)):
            if reset is not None and reset[t]:        # per sequence in the batch
                carry = carry0
            new, y = step(params, carry, xs[t], **options)
            if keep is not None and not keep[t]:      # padding: nothing changes
                new, y = carry, 0
            carry, ys[t] = new, y
        return carry, ys

    A subclass implements :meth:`ScanRule.__call__` and sets two attributes that tell
    :func:`jaxrnn.scan` what it supports (both class attributes or fields):

    Attributes:
        step_options: the names of the step's keyword arguments the rule can
            take (``options``), e.g. ``("recurrent_mask",)``. A step given
            another keyword runs without the rule.
        time_sharding: whether the rule runs one device's slice of a sequence
            whose time axis is split over a mesh axis (``axis_name``, see
            :func:`jaxrnn.scan`). Only rules that say so are given one.

    :class:`jaxrnn.FusedGradient` (a hand-written backward pass through time)
    and :class:`jaxrnn.LinearRecurrence` (a parallel scan of a linear
    recurrence) are the two rules jaxrnn ships; ``jaxrnn.rules`` has the pieces
    a rule author needs.
    """

    step_options: tuple[str, ...] = ()
    time_sharding: bool = False

    @abc.abstractmethod
    def __call__(
        self,
        params,
        carry,
        carry0,
        xs: jax.Array,
        keep: jax.Array | None,
        reset: jax.Array | None,
        *,
        reverse: bool,
        unroll: int | bool,
        options: dict[str, Any],
        axis_name=None,
    ) -> tuple[Any, Any]:
        """``(final_carry, ys)`` of the masked loop above.

        Args:
            params: the cell's params.
            carry: the carry before the first step run (the last with ``reverse``).
            carry0: the carry that a reset restores (:func:`jaxrnn.scan`'s initial carry).
            xs: ``(T, *batch, ...)`` inputs; padding already holds zeros.
            keep: ``None`` or a bool ``(T, *batch)`` array, false on padded steps.
            reset: ``None`` or a bool ``(T, *batch)`` array, true where the carry
                is ``carry0`` before the step (never on a padded step).
            reverse: run from ``t = T - 1`` down to 0.
            unroll: what :func:`jax.lax.scan` would be given, for a rule with a loop.
            options: the step's keyword arrays, names from :attr:`step_options`.
            axis_name: only for a rule with :attr:`time_sharding`: the mesh axis
                the time axis is split over (``xs``, ``keep`` and ``reset`` are
                this device's slice, ``carry`` and the result the whole
                sequence's); otherwise ``None``.
        """
