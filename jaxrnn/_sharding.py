"""Sharding in types: what the scans need to run under a mesh with Explicit axes.

Under ``jax.set_mesh`` of a mesh made by ``jax.make_mesh`` (whose axes are
Explicit), an array's type carries its sharding, and ``lax.scan`` requires the
carry to keep its type from step to step. A zero carry made from a batch shape
is unsharded, while the new carry computed from batch-sharded inputs is
sharded; and reshapes that merge or split axes must state their result's
sharding. These helpers do both, and do nothing outside an Explicit mesh (an
Auto mesh's types carry no sharding), so the programs there are unchanged.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec

Parts = tuple  # one entry per axis: a mesh axis name, a tuple of names, or None


def _spec(x, spec):
    """``spec`` on the mesh of ``x``'s type, as ``out_sharding`` takes it outside
    ``jax.set_mesh`` too."""
    return NamedSharding(jax.typeof(x).sharding.mesh, PartitionSpec(*spec))


def parts(x) -> Parts:
    """The mesh axes each axis of ``x`` is sharded over in its type (all ``None``
    outside an Explicit mesh)."""
    if not isinstance(x, jax.Array):  # NumPy arrays, lists: no sharding in their type
        return (None,) * getattr(x, "ndim", 0)
    sharding = getattr(jax.typeof(x), "sharding", None)
    spec = tuple(getattr(sharding, "spec", ()) or ())
    spec = tuple(p if isinstance(p, str | tuple) and p else None for p in spec)
    return (spec + (None,) * x.ndim)[: x.ndim]


def out_sharding(like, spec: Parts) -> dict:
    """``{"out_sharding": ...}`` of ``spec`` on the mesh of ``like``'s type, for a
    new array (random masks) that lines up with ``like``; ``{}`` when ``spec`` shards
    nothing. With JAX's partitionable random bits the values are those drawn
    unsharded."""
    return {"out_sharding": _spec(like, spec)} if any(spec) else {}


def reshape(x, shape, keep: int):
    """``x.reshape(shape)`` where the last ``keep`` axes are unchanged: they keep
    their sharding and the new leading axes are unsharded (split or merged time
    axes)."""
    shape = tuple(shape)
    own = parts(x)
    if not any(own):
        return x.reshape(shape)
    trailing = own[x.ndim - keep :] if keep else ()
    spec = (*(None,) * (len(shape) - keep), *trailing)
    return jnp.reshape(x, shape, out_sharding=_spec(x, spec))


def with_batch(tree, xs, batch_ndim: int):
    """``tree`` with the leading ``batch_ndim`` axes of each leaf sharded as the batch
    axes of the time-major inputs ``xs`` (its axes ``1 .. batch_ndim``), its other
    axes as they were.

    This is how a zero carry, or a carry the caller made without a sharding, takes
    the sharding of the batch it runs over: each device then holds the rows of its
    own sequences, and nothing is gathered.
    """
    batch = parts(xs)[1 : 1 + batch_ndim]
    if not any(batch):
        return tree

    def one(leaf):
        if not hasattr(leaf, "ndim") or leaf.ndim < len(batch):
            return leaf
        own = parts(leaf)
        want = (*batch, *own[len(batch) :])
        if own == want:
            return leaf
        return jax.sharding.reshard(leaf, _spec(xs, want))

    return jax.tree.map(one, tree)


def contracted(a, b) -> dict:
    """``out_sharding`` for a product that sums ``a (..., m)`` and ``b (..., n)`` over
    their leading axes: ``{}`` unless those are sharded, else the result's ``(m, n)``
    sharding (summed over the devices, as the gradient of a weight is)."""
    left, right = parts(a), parts(b)
    if not any(left[:-1] + right[:-1]):
        return {}
    return {"out_sharding": _spec(a, (left[-1], right[-1]))}


def summed(x, ndim: int) -> dict:
    """``out_sharding`` for a product of ``ndim`` axes that sums ``x``'s sharded leading
    axes away: ``{}`` unless they are sharded, else a result whole on every device."""
    if not any(parts(x)):
        return {}
    return {"out_sharding": _spec(x, (None,) * ndim)}


def unsplit_time(x):
    """``x`` whole along its leading (time) axis: a sequential scan needs every step
    on every device that holds a sequence, so a time-sharded ``x`` is gathered."""
    if x is None or not parts(x)[0]:
        return x
    return jax.sharding.reshard(x, _spec(x, (None, *parts(x)[1:])))
