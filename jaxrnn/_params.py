"""What the built-in params classes share: pytree dataclasses, and sizes read off their weights."""

from __future__ import annotations

import dataclasses
import operator
from typing import ClassVar

import jax
import jax.numpy as jnp

from jaxrnn import _checks, _initializers, _sharding


def static(default):
    """A dataclass field that is part of the tree structure, not a leaf."""
    return dataclasses.field(default=default, metadata={"static": True})


def pytree_dataclass(cls):
    """Frozen dataclass whose array fields are leaves and ``static`` fields are metadata.

    Static fields (the cell variant: ``activation``, ``reset_after``) travel with
    the params, so ``jit``, ``grad`` and optax see only the arrays, while a step
    function still knows which variant to compute.
    """
    cls = dataclasses.dataclass(frozen=True)(cls)
    fields = dataclasses.fields(cls)
    meta = [f.name for f in fields if f.metadata.get("static", False)]
    data = [f.name for f in fields if not f.metadata.get("static", False)]
    return jax.tree_util.register_dataclass(cls, data_fields=data, meta_fields=meta)


#: The :class:`jaxrnn.Cell` fields that read a built-in cell's sizes off its params.
SIZES = {
    "input_size": operator.attrgetter("input_size"),
    "output_size": operator.attrgetter("output_size"),
}


class RecurrentWeights:
    """Sizes of params with ``w_x (d, G*h)`` and ``w_h (h, G*h)``: gates that read ``H_{t-1}``."""

    @property
    def input_size(self) -> int:
        """``d``, the features of one step's input."""
        return self.w_x.shape[-2]

    @property
    def hidden_size(self) -> int:
        """``h``, the size of the hidden state."""
        return self.w_h.shape[-2]

    @property
    def output_size(self) -> int:
        """The size of the step's output ``y = H_t``: ``h``."""
        return self.hidden_size


class InputWeights:
    """Sizes and checks of params ``w_x (d, G*h)``, ``b (G*h,)``: gates that read only the input.

    A subclass sets ``gates`` (``G``) and has the fields ``w_x`` and ``b``.
    """

    gates: ClassVar[int]

    @property
    def input_size(self) -> int:
        """``d``, the features of one step's input."""
        return self.w_x.shape[-2]

    @property
    def hidden_size(self) -> int:
        """``h``, the size of the hidden state."""
        return self.w_x.shape[-1] // self.gates

    @property
    def output_size(self) -> int:
        """The size of the step's output ``y = H_t``: ``h``."""
        return self.hidden_size

    @classmethod
    def initialise(cls, key, input_size: int, hidden_size: int, dtype):
        """LeCun normal ``w_x`` (as the other cells' input weights) and a zero bias."""
        _initializers.check_sizes(key, input_size, hidden_size)
        dtype = _checks.float_dtype(dtype)
        w_x = _initializers.input_weights(key, input_size, hidden_size, cls.gates, dtype)
        return cls(w_x=w_x, b=jnp.zeros((cls.gates * hidden_size,), dtype))

    def check(self):
        """Checks the fields against each other (at trace time, naming the field)."""
        d, n = self.input_size, self.gates * self.hidden_size
        _checks.check_params(self, {"w_x": 2, "b": 1}, lambda: {"w_x": (d, n), "b": (n,)})

    def check_step(self, carry, x):
        """Checks a step's params, ``carry (*batch, h)`` and ``x (*batch, d)``; returns ``x``."""
        self.check()
        return _checks.check_step_args(
            x, {"carry": carry}, self.input_size, self.hidden_size, self.w_x.dtype
        )


class ProjectedInput:
    """Sizes and checks of params that map width ``h`` to ``h``, with an optional input
    projection ``w_in (d, h)``, ``b_in (h,)`` when ``d != h`` (the gated linear cells).

    A subclass has the fields ``w_in`` and ``b_in`` (both ``None`` without a projection)
    and a ``hidden_size``.
    """

    @property
    def input_size(self) -> int:
        """``d``: the rows of ``w_in``, or ``h`` without a projection."""
        return self.hidden_size if self.w_in is None else self.w_in.shape[-2]

    @property
    def output_size(self) -> int:
        """The size of the step's output ``y``: ``h``."""
        return self.hidden_size

    def projection_ranks(self) -> dict[str, int]:
        """Checks that ``b_in`` comes with ``w_in``; the ranks of those present, for
        :func:`jaxrnn._checks.check_params`."""
        projected = self.w_in is not None
        _checks.present(
            self.b_in, projected, "params.b_in", f"w_in {'given' if projected else None}"
        )
        return {"w_in": 2, "b_in": 1} if projected else {}


def bias(b, x):
    """``b (*m)`` broadcast over the leading axes of ``x``: shape ``(*x.shape[:-len(m)], *m)``,
    the leading axes sharded as ``x``'s. An explicit broadcast, so the cells also run under
    ``jax_numpy_rank_promotion="raise"``.

    Broadcast over all the leading axes at once, so that the gradient of ``b`` sums them
    all in one reduction. (Unit axes instead, broadcast by the arithmetic that uses them,
    leave a batch axis of size 1 in the sum: XLA:CPU's reduction over the time axis of a
    ``(T, 1, h)`` array measured 50x slower than over ``(T, h)``, and made the parallel
    rules at batch 1 slower than their sequential scans.)
    """
    lead = x.shape[: x.ndim - b.ndim]
    spec = (*_sharding.parts(x)[: len(lead)], *(None,) * b.ndim)
    dims = tuple(range(len(lead), len(lead) + b.ndim))
    return jax.lax.broadcast_in_dim(b, (*lead, *b.shape), dims, **_sharding.out_sharding(x, spec))
