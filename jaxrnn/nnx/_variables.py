"""Functional params <-> pytrees of ``nnx.Param``."""

from __future__ import annotations

import jax
from flax import nnx


def wrap(tree):
    """Every array of ``tree`` as an ``nnx.Param``; the tree's structure is kept."""
    return nnx.data(jax.tree.map(nnx.Param, tree))


def unwrap(tree):
    """The functional pytree back from :func:`wrap`'s result."""
    return jax.tree.map(lambda v: v[...], tree, is_leaf=lambda v: isinstance(v, nnx.Variable))
