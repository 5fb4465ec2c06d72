"""Reading a training text, with errors that name the file and the problem."""

from __future__ import annotations

import pathlib


class DataError(ValueError):
    """Training data that is missing, unreadable, empty or too short."""


def read_text(path, *, min_chars: int = 1, name: str = "text_path") -> str:
    """The contents of a text file, decoded as UTF-8 (Latin-1 if it is not valid UTF-8).

    Args:
        path: the file.
        min_chars: the fewest characters the caller can work with.
        name: the config key or argument the path came from, for error messages.

    Raises:
        DataError: the file does not exist, is a directory, cannot be read, or
            has fewer than ``min_chars`` characters.

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "tiny.txt"
        >>> _ = path.write_text("abc")
        >>> try:
        ...     read_text(path, min_chars=10)
        ... except DataError as error:
        ...     print(str(error).split(":")[0])
        text_path
    """
    path = pathlib.Path(path)
    if not path.exists():
        raise DataError(f"{name}: the file {str(path)!r} does not exist")
    if not path.is_file():
        raise DataError(f"{name}: {str(path)!r} is not a regular file")
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise DataError(f"{name}: the file {str(path)!r} cannot be read: {error}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    check_length(text, min_chars, f"{name}: the file {str(path)!r}")
    return text


def check_length(text: str, min_chars: int, what: str) -> None:
    """Raises :class:`DataError` if ``text`` has fewer than ``min_chars`` characters."""
    if not text:
        raise DataError(f"{what} is empty")
    if len(text) < min_chars:
        raise DataError(
            f"{what} has {len(text)} characters; at least {min_chars} are needed "
            "(for the chosen batch size, sequence length and validation split)"
        )
