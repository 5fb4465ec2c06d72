"""Data parallelism with JAX's own machinery: a 1-D mesh named ``data``, a batch split over it,
everything else replicated; ``jax.jit`` then inserts the gradient reduction."""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import AxisType, NamedSharding, PartitionSpec

from jaxrnn.train._errors import ConfigError

#: The name of the mesh axis that batches are split over.
AXIS = "data"


class DataParallel:
    """A 1-D device mesh named ``data``: batches split over it, parameters replicated.

    The mesh is made by :func:`jax.make_mesh` with its axis Explicit: the form JAX
    documents as current ("sharding in types"), in which each array's type
    carries its sharding and ``jit`` propagates it op by op, so a step that would
    need a hidden all-gather fails at trace time instead. Arrays placed with
    :meth:`shard` and :meth:`replicate` work in ``jit`` with or without
    ``jax.set_mesh(dp.mesh)``.

    There is no training loop here: ``jax.jit`` of an ordinary training step,
    given a batch sharded along ``data`` and a replicated state, computes each
    device's share of the batch where it lives and reduces the gradient across
    devices (an all-reduce that XLA inserts), so every device ends the step with
    the same parameters.

    With several processes (``jax.distributed.initialize``, e.g. one per host),
    the mesh takes ``devices`` devices of every process, process by process, and
    each process supplies only the rows of a batch that its devices hold.

    Args:
        devices: how many devices of this process to use; ``None`` for all of
            them (``jax.local_device_count()``), 1 for no parallelism.
        batch_size: the global batch size, checked to split evenly over the
            mesh (optional).

    Raises:
        ConfigError: ``devices`` is not between 1 and the local device count,
            or ``batch_size`` is not a multiple of the mesh size; the message
            names the key and the count.

    Example:
        >>> import jax.numpy as jnp
        >>> dp = DataParallel(1, batch_size=8)
        >>> dp.size, dp.mesh.axis_names
        (1, ('data',))
        >>> xs = dp.shard(jnp.zeros((10, 8, 3)), axis=1)  # (T, B, d): B split over the mesh
        >>> xs.sharding.spec
        P(None, 'data', None)
        >>> try:
        ...     DataParallel(1, batch_size=0)
        ... except ConfigError as error:
        ...     print(error)
        batch_size: expected an int >= 1, got 0
    """

    def __init__(self, devices: int | None = None, *, batch_size: int | None = None):
        local = jax.local_device_count()
        count = local if devices is None else devices
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= local:
            raise ConfigError(
                f"devices: expected an int >= 1 and <= {local} (the devices of this process; "
                f"null for all), got {devices!r}"
            )
        by_process: dict[int, list] = {}
        for device in jax.devices():
            by_process.setdefault(device.process_index, []).append(device)
        chosen = [d for p in sorted(by_process) for d in by_process[p][:count]]
        self.mesh = jax.make_mesh(
            (len(chosen),), (AXIS,), axis_types=(AxisType.Explicit,), devices=chosen
        )
        if batch_size is not None:
            self.check_batch(batch_size)

    @property
    def size(self) -> int:
        """The number of devices in the mesh, over all processes."""
        return self.mesh.size

    def check_batch(self, batch_size: int, key: str = "batch_size") -> None:
        """Raises :class:`ConfigError` naming ``key`` unless ``batch_size`` splits evenly."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"{key}: expected an int >= 1, got {batch_size!r}")
        if batch_size % self.size:
            raise ConfigError(
                f"{key}: expected a multiple of {self.size}, the number of devices each batch "
                f"is split over, got {batch_size}; change {key}, or set devices to a count "
                "that divides it"
            )

    def replicated(self) -> NamedSharding:
        """The sharding of a value every device holds whole (parameters, optimizer state)."""
        return NamedSharding(self.mesh, PartitionSpec())

    def batch_sharding(self, ndim: int, axis: int = 0) -> NamedSharding:
        """The sharding of an ``ndim``-dimensional array split along ``axis`` over the mesh."""
        if not -ndim <= axis < ndim:
            raise ValueError(f"axis: expected an axis of a {ndim}-d array, got {axis}")
        spec = [None] * ndim
        spec[axis % ndim] = AXIS
        return NamedSharding(self.mesh, PartitionSpec(*spec))

    def replicate(self, tree):
        """``tree`` with every array on every device of the mesh (inside ``jit`` too)."""
        sharding = self.replicated()
        return jax.tree.map(lambda leaf: _put(leaf, sharding), tree)

    def shard(self, tree, axis: int = 0):
        """``tree`` with every array split along ``axis`` (its batch axis) over the mesh.

        Outside ``jit`` each process places only the rows its own devices hold
        (read from the whole array, which every process has); inside ``jit`` it
        constrains the sharding of a value computed there (a batch drawn from
        the step number, say).

        Raises:
            ValueError: an array's ``axis`` does not divide by :attr:`size`.
        """

        def put(leaf):
            shape = np.shape(leaf)
            sharding = self.batch_sharding(len(shape), axis)
            if shape[axis] % self.size:
                raise ValueError(
                    f"shard: axis {axis} of an array of shape {shape} does not split over "
                    f"{self.size} devices"
                )
            return _put(leaf, sharding)

        return jax.tree.map(put, tree)

    def __repr__(self) -> str:
        return f"DataParallel(size={self.size}, processes={jax.process_count()})"


def _put(leaf, sharding: NamedSharding):
    if isinstance(leaf, jax.core.Tracer):
        return jax.sharding.reshard(leaf, sharding)
    if jax.process_count() == 1 or (isinstance(leaf, jax.Array) and not leaf.is_fully_addressable):
        return jax.device_put(leaf, sharding)
    # Several processes, a value every process holds: each places its own devices' part.
    host = np.asarray(leaf)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def devices_of(tree) -> int:
    """How many devices the arrays of ``tree`` live on, together (1 for none)."""
    found: set = set()
    for leaf in jax.tree.leaves(tree):
        sharding = getattr(leaf, "sharding", None)
        if sharding is not None:
            found |= set(sharding.device_set)
    return max(len(found), 1)
