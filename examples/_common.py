"""What the examples share beyond ``jaxrnn.train``: the ranges of their common config keys,
the devices a run is split over, reading a text file, and writing a summary.

An example imports it as ``_common`` when run as a script (``python
examples/char_lm.py``: ``examples/`` is on the path) and as ``examples._common``
when imported as ``examples.char_lm``.
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Annotated, Literal

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

import jaxrnn
from jaxrnn import train

# The ranges of config keys that several examples share, declared once. Each is
# checked when a config is loaded, before a run writes anything.

#: A count of at least one: sizes, steps, intervals, batch sizes.
Count = Annotated[int, train.Range(ge=1)]
#: A count that may be zero (e.g. characters sampled).
Size = Annotated[int, train.Range(ge=0)]
#: A learning rate, a clipping norm: a positive finite number.
Positive = Annotated[float, train.Range(gt=0)]
#: A dropout rate in [0, 1).
Dropout = Annotated[float, train.Range(ge=0, lt=1)]
#: A share of the data held out, in (0, 1).
Fraction = Annotated[float, train.Range(gt=0, lt=1)]
#: A random seed: what both ``jax.random.key`` and NumPy accept.
Seed = Annotated[int, train.Range(ge=0, lt=2**32)]
#: How many of this process's devices each batch is split over (data parallel):
#: ``None`` (``null``) for all of them, 1 for one; at most ``jax.local_device_count()``,
#: which :func:`data_parallel` checks.
Devices = Annotated[int, train.Range(ge=1)] | None


def data_parallel(config) -> train.DataParallel:
    """The mesh of a config's ``devices``, with its ``batch_size`` checked to split over it.

    Called from each example's ``Config.__post_init__`` too, so that a device
    count this machine lacks, or a batch that does not split evenly, is a
    :class:`train.ConfigError` naming the key when the config is loaded, before
    a run writes anything.
    """
    return train.DataParallel(config.devices, batch_size=config.batch_size)


def sharded_like(x, spec) -> dict:
    """``{"out_sharding": spec}`` on the mesh of ``x``'s type when the mesh has
    Explicit axes and ``spec`` shards something (a gather or a random draw then
    states its result's sharding), else ``{}``."""
    if not any(spec):
        return {}
    return {"out_sharding": NamedSharding(jax.typeof(x).sharding.mesh, PartitionSpec(*spec))}


def batch_spec(x) -> tuple:
    """The mesh axes each axis of ``x`` is split over in its type (``None`` for none)."""
    spec = tuple(jax.typeof(x).sharding.spec) if isinstance(x, jax.Array) else ()
    return (spec + (None,) * np.ndim(x))[: np.ndim(x)]


def lookup(table, ids):
    """``table[ids]``: rows of an embedding table, sharded like ``ids``."""
    return table.at[ids].get(**sharded_like(ids, (*batch_spec(ids), None)))


def bernoulli(key, p, like):
    """Bits of ``like``'s shape, each true with probability ``p``, sharded like it."""
    return jax.random.bernoulli(key, p, like.shape, **sharded_like(like, batch_spec(like)))


def on_host(tree):
    """``tree``'s arrays copied to this process, e.g. replicated parameters for an evaluation,
    a sample or a plot, which then run on one device, apart from the training mesh."""
    return jax.device_get(tree)


def is_writer() -> bool:
    """Whether this process writes the run's own files (summaries, samples, figures): the
    only process, or process 0 of several (which share the work directory)."""
    return jax.process_index() == 0


class RegisteredCells:
    """A config key naming cells registered with :func:`jaxrnn.register_cell`, comma-separated."""

    def check(self, key: str, value) -> None:
        names = split_names(value)
        if not names:
            raise train.ConfigError(f"{key}: expected at least one cell name, got {value!r}")
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise train.ConfigError(f"{key}: expected each cell once, got {repeated[0]!r} twice")
        for name in names:
            try:
                cell = jaxrnn.get_cell(name)
            except ValueError as error:
                raise train.ConfigError(f"{key}: {str(error).partition(': ')[2]}") from None
            if cell.feature_axes is not None:  # a ConvLSTM: inputs (*spatial, channels)
                raise train.ConfigError(
                    f"{key}: expected cells that read feature vectors, got {name!r}, whose "
                    "inputs have spatial axes; these examples feed vectors"
                )


def split_names(value: str) -> tuple[str, ...]:
    """``"rnn, lstm"`` -> ``("rnn", "lstm")``."""
    return tuple(name.strip() for name in value.split(",") if name.strip())


#: The name of a registered cell: ``lstm``, ``gru``, ``mgu``, ``mingru``, or a user's own.
CellName = Annotated[str, RegisteredCells()]


def configured_cell(config, input_size: int):
    """The config's :class:`jaxrnn.Cell` and its init options, checked before any work.

    The options (``config.cell_options``) are tried on the cell's ``init`` with
    the config's sizes, without computing anything, so an unknown option or a
    value the cell refuses is a :class:`train.ConfigError` naming
    ``cell_options`` before a run writes anything.
    """
    cell = jaxrnn.get_cell(config.cell)
    options = dict(config.cell_options)
    if "dtype" in options:
        raise train.ConfigError(
            "cell_options: dtype is not an option here: the params stay float32, and "
            "precision: bfloat16 computes the recurrent layers in bfloat16"
        )
    try:
        cell.with_options(options, "cell_options", ("dtype",))
        jax.eval_shape(
            lambda key: cell.init(key, input_size, config.hidden_size, **options),
            jax.random.key(0),
        )
    except (TypeError, ValueError) as error:
        message = str(error).removeprefix("cell_options: ")
        raise train.ConfigError(f"cell_options: {message}") from None
    return cell, options


#: The compute dtype of the recurrent layers: ``float32``, or ``bfloat16`` (mixed
#: precision: float32 params, optimizer state and carry; bfloat16 matmul operands).
Precision = Literal["float32", "bfloat16"]


def compute_dtype(config):
    """The ``dtype`` of :func:`jaxrnn.stack_scan` for the config's ``precision``."""
    return None if config.precision == "float32" else jnp.dtype(config.precision)


def output_size(step, layers, input_size: int) -> int:
    """Features a stack's last layer puts out (all directions), e.g. for a readout.

    Read off the stack itself (no computation), so any cell's params will do.
    """
    xs = jax.ShapeDtypeStruct((1, 1, input_size), jax.tree.leaves(layers)[0].dtype)
    _, ys = jax.eval_shape(lambda xs: jaxrnn.stack_scan(step, layers, xs), xs)
    return ys.shape[-1]


def read_text(path, *, min_chars: int = 1, name: str = "text_path") -> str:
    """The contents of a text file, decoded as UTF-8 (Latin-1 if it is not valid UTF-8).

    Args:
        path: the file.
        min_chars: the fewest characters the caller can work with.
        name: the config key or argument the path came from, for error messages.

    Raises:
        train.DataError: the file does not exist, is a directory, cannot be
            read, or has fewer than ``min_chars`` characters.

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "tiny.txt"
        >>> _ = path.write_text("abc")
        >>> try:
        ...     read_text(path, min_chars=10)
        ... except train.DataError as error:
        ...     print(str(error).split(":")[0])
        text_path
    """
    path = pathlib.Path(path)
    if not path.exists():
        raise train.DataError(f"{name}: the file {str(path)!r} does not exist")
    if not path.is_file():
        raise train.DataError(f"{name}: {str(path)!r} is not a regular file")
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise train.DataError(
            f"{name}: the file {str(path)!r} cannot be read: {error.strerror}"
        ) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    check_length(text, min_chars, f"{name}: the file {str(path)!r}")
    return text


def check_length(text: str, min_chars: int, what: str) -> None:
    """Raises :class:`train.DataError` if ``text`` has fewer than ``min_chars`` characters."""
    if not text:
        raise train.DataError(f"{what} is empty")
    if len(text) < min_chars:
        raise train.DataError(
            f"{what} has {len(text)} characters; at least {min_chars} are needed "
            "(for the chosen batch size, sequence length and validation split)"
        )


def write_json(path, data) -> None:
    """Writes ``data`` as JSON to a temporary file, then renames it over ``path`` (in process 0
    of several only)."""
    write_text(path, json.dumps(data, indent=2) + "\n")


def write_text(path, text: str) -> None:
    """Writes ``text`` to a temporary file, then renames it over ``path`` (in process 0 of
    several only), so a kill leaves the old file or the new one, never half of one."""
    if not is_writer():
        return
    path = pathlib.Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
