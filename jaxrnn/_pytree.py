"""A small decorator that turns a frozen dataclass into a JAX pytree."""

from __future__ import annotations

import dataclasses

import jax


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


class FusedGates:
    """Sizes shared by the built-in params: ``w_x (d, G*h)`` and ``w_h (h, G*h)``."""

    @property
    def input_size(self) -> int:
        return self.w_x.shape[-2]

    @property
    def hidden_size(self) -> int:
        return self.w_h.shape[-2]


def bias(b, x):
    """``b (n,)`` with leading unit axes to ``x``'s rank: an explicit broadcast, so the
    cells also run under ``jax_numpy_rank_promotion="raise"``."""
    return jax.lax.broadcast_to_rank(b, x.ndim)
