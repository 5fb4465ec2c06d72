"""Orbax checkpoints of a training state, verified by digests; errors say what and where."""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import re
import sys
from typing import Any

import jax
import numpy as np

from jaxrnn.train._errors import CheckpointError, first_line

#: The format of the ``digests`` item: ``{"format", "state": {name: sha256}, "meta": sha256}``.
DIGEST_FORMAT = 1


class Checkpoints:
    """The checkpoints of one run: ``<directory>/<step>/``, written atomically by Orbax.

    Orbax writes each checkpoint into a temporary directory and renames it into
    place only when complete, so an interrupted save never leaves a half-written
    checkpoint behind, and existing checkpoints are never modified.

    A checkpoint holds a ``state`` (any pytree of arrays: parameters, optimizer
    state, carries), ``meta`` (a JSON-ready dict) and ``digests``: the sha256 of
    every array's bytes and of ``meta``, computed from the values in memory and
    committed with them. :meth:`restore` recomputes the digests of what it read
    and refuses a checkpoint whose bytes changed on disk (a flipped bit,
    overwritten data) instead of returning wrong values.

    Retention keeps the newest ``max_to_keep`` *verified* checkpoints: those this
    object saved or restored and verified. Older ones are deleted after a save;
    a checkpoint that was never verified does not count, so the newest verified
    one is never deleted in favour of ones that might be damaged.

    Example:
        >>> import tempfile, jax.numpy as jnp
        >>> with Checkpoints(tempfile.mkdtemp()) as ckpts:
        ...     ckpts.save(3, {"w": jnp.ones(2)}, {"note": "hi"})
        ...     state, meta = ckpts.restore({"w": jnp.zeros(2)})
        ...     ckpts.latest_step(), state["w"].tolist(), meta["note"]
        (3, [1.0, 1.0], 'hi')
    """

    def __init__(self, directory, *, max_to_keep: int | None = 3, read_only: bool = False):
        """Opens (with ``read_only=False``: creates) the checkpoint directory ``directory``;
        ``max_to_keep=None`` keeps every checkpoint."""
        import orbax.checkpoint as ocp

        self.directory = pathlib.Path(directory).absolute()
        self.max_to_keep = max_to_keep
        self.read_only = read_only
        self._verified: set[int] = set()
        self._ocp = ocp
        _quiet_abandoned_reads()
        if self.directory.exists() and not self.directory.is_dir():
            raise CheckpointError(
                f"checkpoint directory {str(self.directory)!r} is a file; expected a directory. "
                "Nothing was changed: move the file aside, or use a new work directory."
            )
        if read_only and not self.directory.is_dir():
            raise CheckpointError(f"no checkpoint directory {str(self.directory)!r}")
        # Retention is done here (only verified checkpoints count), not by Orbax.
        # (Orbax's own read_only option logs warnings on stderr; not creating is enough.)
        options = ocp.CheckpointManagerOptions(
            max_to_keep=None, create=not read_only, enable_async_checkpointing=False
        )
        try:
            self._manager = ocp.CheckpointManager(
                self.directory,
                options=options,
                item_handlers={
                    "state": ocp.StandardCheckpointHandler(),
                    "meta": ocp.JsonCheckpointHandler(),
                    "digests": ocp.JsonCheckpointHandler(),
                },
            )
        except Exception as error:
            raise CheckpointError(
                f"checkpoint directory {str(self.directory)!r} cannot be opened "
                f"({first_line(error)})"
            ) from None

    def __enter__(self) -> Checkpoints:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def latest_step(self) -> int | None:
        """The step of the newest complete checkpoint, or ``None``."""
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        """The steps of all complete checkpoints, oldest first."""
        return sorted(self._manager.all_steps())

    def save(self, step: int, state, meta: dict[str, Any] | None = None) -> None:
        """Saves ``state``, ``meta`` and their digests as checkpoint ``step``, then applies
        the retention rule; never replaces an existing checkpoint.

        Raises:
            CheckpointError: the checkpoint exists, or writing it failed (a full
                disk, say); the earlier checkpoints are intact either way.
        """
        ocp = self._ocp
        if self.read_only:
            raise CheckpointError(f"checkpoints in {str(self.directory)!r} were opened read-only")
        if step in self._manager.all_steps():
            raise CheckpointError(
                f"checkpoint {step} already exists in {str(self.directory)!r}; it is left as it is"
            )
        meta = _json_round_trip(dict(meta or {}))
        digests = {
            "format": DIGEST_FORMAT,
            "state": state_digests(state),
            "meta": _digest_meta(meta),
        }
        args = ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            meta=ocp.args.JsonSave(meta),
            digests=ocp.args.JsonSave(digests),
        )
        try:
            self._manager.save(step, args=args, force=True)
            self._manager.wait_until_finished()
        except Exception as error:
            raise CheckpointError(
                f"checkpoint {step} could not be saved in {str(self.directory)!r} "
                f"({first_line(error)}); the earlier checkpoints are intact. Fix the cause "
                "(e.g. free some space) and run the same command to resume."
            ) from None
        self._verified.add(step)
        self._prune()

    def restore(self, target, step: int | None = None):
        """Restores checkpoint ``step`` (default: the newest) into the structure of ``target``.

        Args:
            target: a pytree with the structure, shapes and dtypes to restore
                into (e.g. a freshly initialised state; its values are unused).
            step: which checkpoint; ``None`` for the newest.

        Returns:
            ``(state, meta)``, both checked against the digests saved with them.

        Raises:
            CheckpointError: no checkpoint; an unreadable (corrupt or truncated)
                one; one whose bytes no longer match their digests; or one whose
                arrays differ from ``target`` in name, shape or dtype (the
                message names the first mismatching parameters).
        """
        ocp = self._ocp
        step, where = self._locate(step)
        try:
            stored = self._manager.item_metadata(step)["state"]
        except Exception as error:
            raise _unreadable(where, error, self._fallback(step)) from None
        if stored is None:
            raise _unreadable(where, "its state metadata is missing", self._fallback(step))
        _check_compatible(where, _stored_arrays(stored), _target_arrays(target))
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
        restored = self._restore_items(
            step, where, state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()
        )
        meta = dict(restored.meta or {})
        digests = getattr(restored, "digests", None)
        if digests is not None:
            self._verify(where, step, digests.get("meta"), _digest_meta(meta), "meta")
            saved = digests.get("state") or {}
            found = state_digests(restored.state)
            for name in sorted(set(saved) | set(found)):
                self._verify(where, step, saved.get(name), found.get(name), name)
            self._verified.add(step)
        return restored.state, meta

    def restore_meta(self, step: int | None = None) -> dict[str, Any]:
        """The ``meta`` dict of checkpoint ``step`` (default: the newest), checked against its
        digest, without reading the arrays."""
        step, where = self._locate(step)
        restored = self._restore_items(step, where, meta=self._ocp.args.JsonRestore())
        meta = dict(restored.meta or {})
        digests = getattr(restored, "digests", None)
        if digests is not None:
            self._verify(where, step, digests.get("meta"), _digest_meta(meta), "meta")
        return meta

    def close(self) -> None:
        """Ends Orbax's background work; call it (or use ``with``) before the process exits."""
        self._manager.close()

    def _locate(self, step):
        if step is None:
            step = self.latest_step()
        if step is None or step not in self._manager.all_steps():
            raise CheckpointError(f"no checkpoint {step} in {str(self.directory)!r}")
        return step, str(self.directory / str(step))

    def _restore_items(self, step, where, **items):
        ocp = self._ocp
        if (self.directory / str(step) / "digests").is_dir():
            items["digests"] = ocp.args.JsonRestore()
        try:
            return self._manager.restore(step, args=ocp.args.Composite(**items))
        except Exception as error:
            raise _unreadable(where, error, self._fallback(step)) from None

    def _fallback(self, step) -> str:
        """What to do about a damaged checkpoint at ``step``: the advice both errors give."""
        earlier = [s for s in self.all_steps() if s < step]
        if earlier:
            return f"move that directory aside to resume from the checkpoint at step {earlier[-1]}"
        return "move that directory aside"

    def _verify(self, where, step, saved, found, name):
        if saved is None or saved != found:
            problem = "is missing from" if saved is None else "does not match"
            raise CheckpointError(
                f"checkpoint {where!r} is damaged: the sha256 of {name} {problem} the digest "
                f"saved with it. Nothing was changed and nothing was trained on it; "
                f"{self._fallback(step)}, or use a new work directory."
            )

    def _prune(self):
        if self.max_to_keep is None:
            return
        verified = sorted(self._verified)
        if len(verified) < self.max_to_keep:
            return
        cutoff = verified[-self.max_to_keep]
        for step in self.all_steps():
            if step < cutoff:
                self._manager.delete(step)
                self._verified.discard(step)


def state_digests(state) -> dict[str, str]:
    """``{name: sha256}`` of every array of ``state``, named by its path (``params.w``)."""
    return {
        ".".join(_key_name(k) for k in path): _array_digest(leaf)
        for path, leaf in jax.tree_util.tree_leaves_with_path(state)
    }


def _array_digest(leaf) -> str:
    if hasattr(leaf, "dtype") and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
        leaf = jax.random.key_data(leaf)
    if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
        # Spread over processes (a batch-sharded carry): every process digests the whole
        # array, gathered; all of them save and restore together, so all gather together.
        from jax.experimental import multihost_utils

        leaf = multihost_utils.process_allgather(leaf, tiled=True)
    array = np.asarray(jax.device_get(leaf))
    if array.ndim == 0 and array.dtype.kind in "biu":
        # A Python int (a TrainState's step) may come back as another integer type.
        payload = f"int:{int(array)}".encode()
    elif array.ndim == 0 and array.dtype.kind == "f":
        payload = b"float:" + np.float64(array).tobytes()
    else:
        header = f"{array.dtype.str}{array.shape}".encode()
        payload = header + np.ascontiguousarray(array).tobytes()
    return hashlib.sha256(payload).hexdigest()


def _json_round_trip(meta: dict) -> dict:
    return json.loads(json.dumps(meta))


def _digest_meta(meta: dict) -> str:
    text = json.dumps(meta, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _unreadable(where, error, fallback) -> CheckpointError:
    detail = error if isinstance(error, str) else first_line(error).rstrip(".")
    # TensorStore's long message names the array in its spec: 'path': 'params.w/'.
    array = re.search(r"'path': '([^'/]+)/'", str(error))
    if array:
        detail += f"; array {array.group(1)}"
    return CheckpointError(
        f"checkpoint {where!r} cannot be read ({detail}). It may be truncated, corrupt or "
        f"written by something else. Nothing was changed: {fallback}, or use a new work "
        "directory."
    )


def _quiet_abandoned_reads() -> None:
    """Drops the errors of the reads a failed restore abandoned.

    When Orbax's restore fails, its event loop closes while TensorStore still
    finishes the other reads: each posts its result to the closed loop ("Event
    loop is closed"), and its coroutine is collected with its error unretrieved.
    Python prints both through ``sys.unraisablehook``, as tracebacks after the
    one-line error. Those (and only those) are dropped, from the first
    :class:`Checkpoints` on: the reads may finish before the error reaches us.
    """
    previous = sys.unraisablehook
    if getattr(previous, "drops_abandoned_reads", False):
        return

    def hook(unraisable):
        if not _abandoned_read(unraisable):
            previous(unraisable)

    hook.drops_abandoned_reads = True
    sys.unraisablehook = hook


def _abandoned_read(unraisable) -> bool:
    error = unraisable.exc_value
    if isinstance(error, RuntimeError) and str(error) == "Event loop is closed":
        return True
    code = getattr(unraisable.object, "cr_code", None)  # a coroutine of Orbax's
    return code is not None and f"{os.sep}orbax{os.sep}" in code.co_filename


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
