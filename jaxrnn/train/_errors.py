"""The errors a user can fix; :func:`jaxrnn.train.run_main` prints each as one line, exit status 2.

Each message names what is wrong (a config key, a file, a checkpoint), what
was expected and what was found, and says that nothing saved was changed.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A config file or value that does not fit the schema; the message names the key."""


class DataError(ValueError):
    """Training data that is missing, unreadable, empty or too short."""


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read, fails its digest check, or does not fit the model."""


class WorkdirError(RuntimeError):
    """A work directory that cannot be used: held by another run, not a writable
    directory, out of space, or holding a damaged run file (``metrics.jsonl``)."""


#: What :func:`jaxrnn.train.user_errors` turns into a message and exit status 2.
USER_ERRORS = (ConfigError, DataError, CheckpointError, WorkdirError)


def one_line(text: str, limit: int = 300) -> str:
    """``text`` on one line (whitespace runs collapsed), cut to ``limit`` characters."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def first_line(error: BaseException, limit: int = 200) -> str:
    """``"Type: first line of the message"``: long library messages (TensorStore's run to
    dozens of lines) reduced to what names the problem."""
    lines = [line for line in str(error).splitlines() if line.strip()]
    line = lines[0].split(" See full TensorStore details")[0] if lines else ""
    return one_line(f"{type(error).__name__}: {line}", limit)
