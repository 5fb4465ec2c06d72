"""A run's work directory: one run at a time (an OS lock), atomic JSON, disk errors named."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import pathlib
import threading
from collections.abc import Iterator

from jaxrnn.train._errors import WorkdirError

#: The lock file in every work directory; it holds the process id of the run that has it.
LOCK_NAME = ".lock"

# Work directories this process holds, with how many nested holders each: a second
# flock from the same process on a new descriptor would wait for itself.
_held: dict[str, int] = {}
_held_guard = threading.Lock()

#: errno values that mean "the disk cannot take more", whatever file was being written.
_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS)


def is_primary() -> bool:
    """Whether this process writes a run's files: the only one, or process 0 of several."""
    import jax

    return jax.process_index() == 0


@contextlib.contextmanager
def hold_workdir(workdir) -> Iterator[pathlib.Path]:
    """:func:`lock_workdir` in the primary process; in the others of a multi-process run,
    which share the directory with it and write none of its files, the path alone."""
    if is_primary():
        with lock_workdir(workdir) as path:
            yield path
    else:
        yield pathlib.Path(workdir).absolute()


@contextlib.contextmanager
def lock_workdir(workdir) -> Iterator[pathlib.Path]:
    """Holds an exclusive OS lock on ``workdir`` (created if needed) while the block runs.

    The lock is ``fcntl.flock`` on ``workdir/.lock``, which records the holder's
    process id; the operating system releases it when the process exits, crashes
    or is killed, so a stale lock file never blocks a new run. Nested holders in
    one process share the lock.

    Raises:
        WorkdirError: another process holds the directory (the message names
            it and the holder's process id), or ``workdir`` cannot be created or
            written (it is a file, or lies under one).
    """
    path = pathlib.Path(workdir).absolute()
    make_dir(path, "workdir")
    key = os.path.realpath(path)
    with _held_guard:
        nested = key in _held
        if nested:
            _held[key] += 1
    if nested:
        try:
            yield path
        finally:
            with _held_guard:
                _held[key] -= 1
        return
    fd = _acquire(path)
    with _held_guard:
        _held[key] = 1
    try:
        yield path
    finally:
        with _held_guard:
            del _held[key]
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)  # an empty lock file: no run holds it
        os.close(fd)  # releases the lock


def _acquire(path: pathlib.Path) -> int:
    lock = path / LOCK_NAME
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        raise WorkdirError(
            f"workdir: cannot create the lock file {str(lock)!r} ({error.strerror}); "
            "expected a writable directory"
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise WorkdirError(f"workdir: cannot lock {str(lock)!r} ({error.strerror})") from None
        raise WorkdirError(
            f"workdir: {str(path)!r} is in use by another run (process {holder}); nothing "
            "was changed. Wait for that run to finish or stop it, or use another work directory."
        ) from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except OSError as error:
        os.close(fd)
        raise WorkdirError(
            f"workdir: cannot write the lock file {str(lock)!r} ({error.strerror})"
        ) from None
    return fd


def make_dir(path: pathlib.Path, name: str) -> None:
    """Creates directory ``path``; a :class:`WorkdirError` naming ``name`` if it cannot be."""
    if path.exists() and not path.is_dir():
        raise WorkdirError(f"{name}: {str(path)!r} is a file; expected a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise WorkdirError(
            f"{name}: cannot create the directory {str(path)!r} ({error.strerror}); "
            "expected a writable directory, or a path where one can be made"
        ) from None


def write_json(path: pathlib.Path, data) -> None:
    """Writes ``data`` as JSON to a temporary file, then renames it over ``path``."""
    tmp = path.with_name(path.name + ".tmp")
    with writing(path):
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        os.replace(tmp, path)


@contextlib.contextmanager
def writing(path: pathlib.Path) -> Iterator[None]:
    """Names ``path`` in an ``OSError`` raised while writing it (``write`` alone does not)."""
    try:
        yield
    except OSError as error:
        if error.filename is None:
            error.filename = str(path)
        raise


def disk_error(error: OSError, workdir: pathlib.Path, where: str) -> WorkdirError | None:
    """A one-line :class:`WorkdirError` for an ``OSError`` about the work directory, or ``None``.

    A full disk (or quota, or read-only file system) is reported whatever the
    file; other errors only for files inside ``workdir``, since an ``OSError``
    from elsewhere (the user's own code) is not the work directory's fault.
    ``where`` says how far the run got (e.g. its newest checkpoint).
    """
    filename = error.filename
    inside = filename is not None and _is_inside(pathlib.Path(filename), workdir)
    if error.errno not in _FULL and not inside:
        return None
    what = f" writing {str(filename)!r}" if filename else ""
    advice = (
        "free some space and run the same command to resume"
        if error.errno in _FULL
        else "make it a writable file in a directory, then run the same command to resume"
    )
    return WorkdirError(f"workdir: {error.strerror or error}{what}; {where}: {advice}.")


def _is_inside(path: pathlib.Path, directory: pathlib.Path) -> bool:
    try:
        path.absolute().relative_to(directory.absolute())
    except ValueError:
        return False
    return True
