"""The command line every example shares: ``[--config FILE] [--workdir DIR] [key=value ...]``."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import pathlib
import sys

from jaxrnn.train._config import ConfigError, load_config
from jaxrnn.train._errors import USER_ERRORS, one_line
from jaxrnn.train._loop import RunResult
from jaxrnn.train._workdir import disk_error, lock_workdir


@contextlib.contextmanager
def user_errors(prog: str = "error"):
    """Turns a bad config, bad data, a bad checkpoint or an unusable work directory into a
    one-line message on stderr and exit status 2.

    These errors are the user's to fix (their message says how), so a traceback
    would only hide the message.

    Example:
        >>> import contextlib, io
        >>> from jaxrnn.train import ConfigError
        >>> err = io.StringIO()
        >>> with contextlib.redirect_stderr(err):
        ...     try:
        ...         with user_errors("prog"):
        ...             raise ConfigError("steps: expected an int >= 1, got 0")
        ...     except SystemExit as exit:
        ...         print(exit.code)
        2
        >>> err.getvalue()
        'prog: ConfigError: steps: expected an int >= 1, got 0\\n'
    """
    try:
        yield
    except USER_ERRORS as error:
        kind = next(c.__name__ for c in USER_ERRORS if isinstance(error, c))  # the public one
        print(f"{prog}: {kind}: {one_line(error, 2000)}", file=sys.stderr)
        raise SystemExit(2) from None


def run_main(schema, train_and_evaluate, argv=None, *, name, config, description=None) -> int:
    """A script's whole command line: parse, run ``train_and_evaluate``, return the exit status.

    The command line is ``[--config FILE] [--workdir DIR] [--import MODULE]
    [key=value ...]``; the config is read and checked (types and ranges) before
    anything is written. ``--import`` loads a module of the user's first, so a
    cell it registers can be named by a ``cell=`` key.
    The work directory defaults to ``runs/<name>`` and is locked for the whole
    run, so a second run on it is refused. ``description`` (e.g. the module's
    docstring) gives the help text its first paragraph.

    Args:
        schema: the config dataclass.
        train_and_evaluate: ``train_and_evaluate(config, workdir) -> RunResult``.
        argv: the arguments (default: ``sys.argv[1:]``).
        name: the program name, for messages and the default work directory.
        config: the default config file.
        description: help text.

    Returns:
        0 when the run finished, 130 when Ctrl-C stopped it (after it saved, or
        at once on a second Ctrl-C), and 2 for a bad config, bad data, a bad
        checkpoint or an unusable work directory (see :func:`user_errors`).
    """
    first_paragraph = " ".join((description or "").strip().split("\n\n")[0].split()) or None
    with user_errors(name):
        run_config, workdir = _parse_run(
            schema,
            argv,
            config=config,
            workdir=pathlib.Path("runs") / name,
            description=first_paragraph,
        )
        try:
            with lock_workdir(workdir):
                result = train_and_evaluate(run_config, workdir)
        except KeyboardInterrupt:
            print(f"{name}: aborted; the newest checkpoint is intact", file=sys.stderr)
            return 130
        except OSError as error:  # a full disk while writing a summary or a figure, say
            converted = disk_error(error, workdir, "the checkpoints written so far are intact")
            if converted is None:
                raise
            raise converted from None
    if not isinstance(result, RunResult):
        raise TypeError(
            f"train_and_evaluate: expected it to return a jaxrnn.train.RunResult, got {result!r}"
        )
    return 130 if result.interrupted else 0


def _parse_run(schema, argv=None, *, config, workdir, description=None):
    """An example's command line parsed into ``(config, workdir)``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--config", type=pathlib.Path, default=config, help=f"config file (default: {config})"
    )
    parser.add_argument(
        "--workdir",
        type=pathlib.Path,
        default=workdir,
        help=f"run directory: checkpoints, metrics.jsonl, plots (default: {workdir})",
    )
    parser.add_argument(
        "--import",
        dest="modules",
        action="append",
        default=[],
        metavar="MODULE",
        help="import a module first (repeatable), e.g. one that registers a cell of your own",
    )
    parser.add_argument(
        "overrides", nargs="*", metavar="key=value", help="override one config key, e.g. steps=500"
    )
    args = parser.parse_args(argv)
    for module in args.modules:
        _import(module)
    return load_config(schema, args.config, args.overrides), pathlib.Path(args.workdir)


def _import(module: str) -> None:
    """Imports ``module`` (from the working directory too), as ``--import`` asks."""
    if "" not in sys.path and str(pathlib.Path.cwd()) not in sys.path:
        sys.path.insert(0, str(pathlib.Path.cwd()))
    try:
        importlib.import_module(module)
    except ImportError as error:
        raise ConfigError(f"--import: cannot import {module!r}: {error}") from None
