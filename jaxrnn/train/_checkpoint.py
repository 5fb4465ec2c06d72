"""Orbax checkpoints of a training state, with errors that say what is wrong and where."""

from __future__ import annotations

import pathlib
from typing import Any

import jax
import numpy as np


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read, or that does not fit the model being restored."""


class Checkpoints:
    """The checkpoints of one run: ``<directory>/<step>/``, written atomically by Orbax.

    Orbax writes each checkpoint into a temporary directory and renames it into
    place only when complete, so an interrupted save never leaves a half-written
    checkpoint behind, and existing checkpoints are never modified. The newest
    ``max_to_keep`` are kept.

    A checkpoint holds a ``state`` (any pytree of arrays: parameters, optimizer
    state, carries) and ``meta``, a JSON-ready dict.

    Example:
        >>> import tempfile, jax.numpy as jnp
        >>> ckpts = Checkpoints(tempfile.mkdtemp())
        >>> ckpts.save(3, {"w": jnp.ones(2)}, {"note": "hi"})
        >>> state, meta = ckpts.restore({"w": jnp.zeros(2)})
        >>> ckpts.latest_step(), state["w"].tolist(), meta["note"]
        (3, [1.0, 1.0], 'hi')
    """

    def __init__(self, directory, *, max_to_keep: int | None = 3):
        import orbax.checkpoint as ocp

        self.directory = pathlib.Path(directory).absolute()
        self._ocp = ocp
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, create=True, enable_async_checkpointing=False
        )
        try:
            self._manager = ocp.CheckpointManager(
                self.directory,
                options=options,
                item_handlers={
                    "state": ocp.StandardCheckpointHandler(),
                    "meta": ocp.JsonCheckpointHandler(),
                },
            )
        except Exception as error:
            raise CheckpointError(
                f"checkpoint directory {str(self.directory)!r} cannot be opened: {error}"
            ) from error

    def latest_step(self) -> int | None:
        """The step of the newest complete checkpoint, or ``None``."""
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def save(self, step: int, state, meta: dict[str, Any] | None = None) -> None:
        """Saves ``state`` and ``meta`` as checkpoint ``step``; never replaces an existing one."""
        ocp = self._ocp
        if step in self._manager.all_steps():
            raise CheckpointError(
                f"checkpoint {step} already exists in {str(self.directory)!r}; it is left as it is"
            )
        args = ocp.args.Composite(
            state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(dict(meta or {}))
        )
        self._manager.save(step, args=args, force=True)
        self._manager.wait_until_finished()

    def restore(self, target, step: int | None = None):
        """Restores checkpoint ``step`` (default: the newest) into the structure of ``target``.

        Args:
            target: a pytree with the structure, shapes and dtypes to restore
                into (e.g. a freshly initialised state; its values are unused).
            step: which checkpoint; ``None`` for the newest.

        Returns:
            ``(state, meta)``.

        Raises:
            CheckpointError: no checkpoint, an unreadable (corrupt or truncated)
                one, or one whose arrays differ from ``target`` in name, shape or
                dtype; the message names the first mismatching parameters.
        """
        ocp = self._ocp
        if step is None:
            step = self.latest_step()
        if step is None or step not in self._manager.all_steps():
            raise CheckpointError(f"no checkpoint {step} in {str(self.directory)!r}")
        where = str(self.directory / str(step))
        try:
            stored = self._manager.item_metadata(step)["state"]
        except Exception as error:
            raise _unreadable(where, error) from error
        if stored is None:
            raise _unreadable(where, "its state metadata is missing")
        _check_compatible(where, _stored_arrays(stored), _target_arrays(target))
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
        args = ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()
        )
        try:
            restored = self._manager.restore(step, args=args)
        except Exception as error:
            raise _unreadable(where, error) from error
        return restored.state, dict(restored.meta or {})

    def restore_meta(self, step: int | None = None) -> dict[str, Any]:
        """The ``meta`` dict of checkpoint ``step`` (default: the newest), without its arrays."""
        ocp = self._ocp
        step = self.latest_step() if step is None else step
        if step is None or step not in self._manager.all_steps():
            raise CheckpointError(f"no checkpoint {step} in {str(self.directory)!r}")
        try:
            restored = self._manager.restore(
                step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())
            )
        except Exception as error:
            raise _unreadable(str(self.directory / str(step)), error) from error
        return dict(restored.meta or {})

    def close(self) -> None:
        self._manager.close()


def _unreadable(where, error) -> CheckpointError:
    return CheckpointError(
        f"checkpoint {where!r} cannot be read ({type(error).__name__}: {error}). "
        "It may be corrupt or written by something else. Nothing was changed: move that "
        "directory aside to resume from an earlier checkpoint, or use a new work directory."
    )


def _key_name(key) -> str:
    for attr in ("key", "idx", "name"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def _target_arrays(target) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    # A Python scalar (a TrainState's int step, say) has no fixed dtype to compare: None.
    leaves = jax.tree_util.tree_leaves_with_path(target)
    return {
        ".".join(_key_name(k) for k in path): (
            tuple(np.shape(leaf)),
            np.dtype(leaf.dtype) if hasattr(leaf, "dtype") else None,
        )
        for path, leaf in leaves
    }


def _stored_arrays(stored) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    tree = getattr(stored, "tree", stored)
    arrays = {}
    for leaf in jax.tree.leaves(tree):
        name = getattr(leaf, "name", None)
        if name is None or not hasattr(leaf, "shape"):
            continue
        arrays[name] = (tuple(leaf.shape), np.dtype(leaf.dtype))
    return arrays


def _check_compatible(where, stored, wanted):
    problems = []
    for name, (shape, dtype) in wanted.items():
        if name not in stored:
            problems.append(f"{name}: missing from the checkpoint (expected {shape} {dtype})")
        elif stored[name][0] != shape or dtype not in (None, stored[name][1]):
            have_shape, have_dtype = stored[name]
            problems.append(
                f"{name}: expected shape {shape} {dtype}, the checkpoint has "
                f"{have_shape} {have_dtype}"
            )
    problems += [
        f"{name}: in the checkpoint but not in the model" for name in stored if name not in wanted
    ]
    if problems:
        shown = "; ".join(problems[:5]) + ("; ..." if len(problems) > 5 else "")
        raise CheckpointError(
            f"checkpoint {where!r} does not fit this model ({len(problems)} mismatching "
            f"arrays): {shown}. Nothing was changed; use the config it was trained with, "
            "or a new work directory."
        )
