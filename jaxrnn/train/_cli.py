"""The command line every example shares: ``[--config FILE] [--workdir DIR] [key=value ...]``,
and the options that start several processes."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import pathlib
import re
import signal
import sys

from jaxrnn.train._config import ConfigError, load_config
from jaxrnn.train._errors import USER_ERRORS, first_line, one_line
from jaxrnn.train._loop import RunResult
from jaxrnn.train._workdir import disk_error, hold_workdir


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


def run_main(
    schema, train_and_evaluate, argv=None, *, name, config, description=None, epilog=None
) -> int:
    """A script's whole command line: parse, run ``train_and_evaluate``, return the exit status.

    The command line is ``[--config FILE] [--workdir DIR] [--import MODULE]
    [--coordinator HOST:PORT --num-processes N --process-id I] [key=value ...]``;
    the config is read and checked (types and ranges) before anything is
    written. ``--import`` loads a module of the user's first, so a cell it
    registers can be named by a ``cell=`` key.
    The work directory defaults to ``runs/<name>`` and is locked for the whole
    run, so a second run on it is refused. ``description`` (e.g. the module's
    docstring) gives the help text its first paragraph.

    Several processes (one per host, say) train one model together when each
    is started with the same ``--coordinator`` (process 0's address and a free
    port), the same ``--num-processes`` and its own ``--process-id``; each
    defaults to the environment variable ``JAX_COORDINATOR_ADDRESS``,
    ``JAX_NUM_PROCESSES`` or ``JAX_PROCESS_ID``, and where none is given JAX
    detects Slurm, Open MPI and Cloud TPU itself. The options are checked and
    ``jax.distributed.initialize`` is called before anything else; then every
    process runs ``train_and_evaluate`` and process 0 alone locks the work
    directory (see :func:`fit` for who writes what).

    Args:
        schema: the config dataclass.
        train_and_evaluate: ``train_and_evaluate(config, workdir) -> RunResult``.
        argv: the arguments (default: ``sys.argv[1:]``).
        name: the program name, for messages and the default work directory.
        config: the default config file.
        description: help text.
        epilog: text shown after the options in ``--help`` (e.g. other commands).

    Returns:
        0 when the run finished, 130 when Ctrl-C stopped it and 143 when SIGTERM
        did (after it saved, or at once on a second signal), and 2 for a bad config, bad data, a bad
        checkpoint, an unusable work directory or a failed start of several
        processes (see :func:`user_errors`).
    """
    first_paragraph = " ".join((description or "").strip().split("\n\n")[0].split()) or None
    with user_errors(name):
        run_config, workdir = _parse_run(
            schema,
            argv,
            config=config,
            workdir=pathlib.Path("runs") / name,
            description=first_paragraph,
            epilog=epilog,
        )
        try:
            with hold_workdir(workdir):
                result = train_and_evaluate(run_config, workdir)
        except KeyboardInterrupt as error:
            print(f"{name}: aborted; the newest checkpoint is intact", file=sys.stderr)
            return 128 + getattr(error, "signum", signal.SIGINT)
        except OSError as error:  # a full disk while writing a summary or a figure, say
            converted = disk_error(error, workdir, "the checkpoints written so far are intact")
            if converted is None:
                raise
            raise converted from None
    if not isinstance(result, RunResult):
        raise TypeError(
            f"train_and_evaluate: expected it to return a jaxrnn.train.RunResult, got {result!r}"
        )
    if not result.interrupted:
        return 0
    return 128 + signal.Signals[result.stopped_by or "SIGINT"]


def _parse_run(schema, argv=None, *, config, workdir, description=None, epilog=None):
    """An example's command line parsed into ``(config, workdir)``, with several processes
    started first if it asks for them."""
    parser = argparse.ArgumentParser(description=description, epilog=epilog)
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
    group = parser.add_argument_group(
        "several processes (e.g. one per host), each started with the same coordinator and "
        "process count and its own id"
    )
    group.add_argument(
        "--coordinator",
        metavar="HOST:PORT",
        help="process 0's address and a free port (default: $JAX_COORDINATOR_ADDRESS)",
    )
    group.add_argument(
        "--num-processes",
        metavar="N",
        help="how many processes (default: $JAX_NUM_PROCESSES)",
    )
    group.add_argument(
        "--process-id",
        metavar="I",
        help="this process's id, 0 .. N-1 (default: $JAX_PROCESS_ID)",
    )
    parser.add_argument(
        "overrides", nargs="*", metavar="key=value", help="override one config key, e.g. steps=500"
    )
    args = parser.parse_args(argv)
    start_processes(args.coordinator, args.num_processes, args.process_id)
    for module in args.modules:
        _import(module)
    # A config file of one's own is read over the example's, so it may give only some keys.
    own = config is not None and pathlib.Path(args.config) != pathlib.Path(config)
    defaults = config if own and pathlib.Path(config).is_file() else None
    run_config = load_config(schema, args.config, args.overrides, defaults=defaults)
    return run_config, pathlib.Path(args.workdir)


#: The command-line options of several processes, with the environment variables behind them.
_PROCESS_OPTIONS = {
    "coordinator": ("--coordinator", "JAX_COORDINATOR_ADDRESS"),
    "num_processes": ("--num-processes", "JAX_NUM_PROCESSES"),
    "process_id": ("--process-id", "JAX_PROCESS_ID"),
}


def start_processes(coordinator=None, num_processes=None, process_id=None) -> bool:
    """Calls ``jax.distributed.initialize`` if the options (or their environment variables)
    ask for several processes; returns whether it did.

    Raises:
        ConfigError: an option is malformed, or the processes could not start
            (the coordinator is unreachable, JAX has already started, ...).
    """
    given = {"coordinator": coordinator, "num_processes": num_processes, "process_id": process_id}
    values, names = {}, {}
    for key, value in given.items():
        flag, variable = _PROCESS_OPTIONS[key]
        names[key] = flag
        if value is None and os.environ.get(variable):
            value, names[key] = os.environ[variable], f"{flag} (from ${variable})"
        values[key] = value
    if all(value is None for value in values.values()):
        return False
    for key in ("num_processes", "process_id"):
        if values[key] is not None:
            try:
                values[key] = int(values[key])
            except ValueError:
                raise ConfigError(f"{names[key]}: expected an int, got {values[key]!r}") from None
    count, index = values["num_processes"], values["process_id"]
    if count is not None and count < 1:
        raise ConfigError(f"{names['num_processes']}: expected an int >= 1, got {count}")
    if count == 1 and index in (None, 0):
        return False  # one process: nothing to coordinate
    if index is not None and (index < 0 or (count is not None and index >= count)):
        bound = f" and < {count}" if count is not None else ""
        raise ConfigError(f"{names['process_id']}: expected an int >= 0{bound}, got {index}")
    address = values["coordinator"]
    if address is not None and not re.fullmatch(r"\S+:\d+", address):
        raise ConfigError(f"{names['coordinator']}: expected HOST:PORT, got {address!r}")
    import jax

    try:
        jax.distributed.initialize(
            coordinator_address=address, num_processes=count, process_id=index
        )
    except Exception as error:  # ValueError, RuntimeError, a connection timeout, ...
        raise ConfigError(
            f"{names['coordinator']} {address}: jax.distributed.initialize could not start "
            f"process {index} of {count} ({first_line(error)})"
        ) from None
    return True


def _import(module: str) -> None:
    """Imports ``module`` (from the working directory too), as ``--import`` asks."""
    if "" not in sys.path and str(pathlib.Path.cwd()) not in sys.path:
        sys.path.insert(0, str(pathlib.Path.cwd()))
    try:
        importlib.import_module(module)
    except ImportError as error:
        raise ConfigError(f"--import: cannot import {module!r}: {error}") from None
