"""The command line every example shares: ``[--config FILE] [--workdir DIR] [key=value ...]``."""

from __future__ import annotations

import argparse
import contextlib
import pathlib
import sys

from jaxrnn.train._checkpoint import CheckpointError
from jaxrnn.train._config import ConfigError, load_config
from jaxrnn.train._data import DataError


def add_run_arguments(parser: argparse.ArgumentParser, *, config, workdir) -> None:
    """Adds ``--config``, ``--workdir`` and the ``key=value`` overrides to ``parser``."""
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
        "overrides", nargs="*", metavar="key=value", help="override one config key, e.g. steps=500"
    )


def parse_run(schema, argv=None, *, config, workdir, description=None):
    """Parses an example's command line into ``(config, workdir)``.

    Example:
        >>> import dataclasses
        >>> @dataclasses.dataclass(frozen=True)
        ... class Config:
        ...     steps: int = 10
        >>> parse_run(Config, ["steps=3", "--workdir", "out"], config=None, workdir="runs/x")
        (Config(steps=3), PosixPath('out'))
    """
    parser = argparse.ArgumentParser(description=description)
    add_run_arguments(parser, config=config, workdir=workdir)
    args = parser.parse_args(argv)
    return load_config(schema, args.config, args.overrides), pathlib.Path(args.workdir)


@contextlib.contextmanager
def user_errors(prog: str = "error"):
    """Turns a bad config, bad data or a bad checkpoint into a one-line message and exit status 2.

    These errors are the user's to fix (their message says how), so a traceback
    would only hide the message.
    """
    try:
        yield
    except (ConfigError, DataError, CheckpointError) as error:
        print(f"{prog}: {type(error).__name__}: {error}", file=sys.stderr)
        raise SystemExit(2) from None


def run_main(schema, train_and_evaluate, argv=None, *, name, config, description=None):
    """An example's whole command line: parse, run ``train_and_evaluate``, return the exit status.

    The work directory defaults to ``runs/<name>``; ``description`` (e.g. the
    module's docstring) gives the help text its first paragraph. The status is 0 when
    the run finished, 130 when Ctrl-C stopped it (after it saved), and 2 for a
    bad config, bad data or a bad checkpoint (see :func:`user_errors`).
    """
    with user_errors(name):
        run_config, run_dir = parse_run(
            schema,
            argv,
            config=config,
            workdir=pathlib.Path("runs") / name,
            description=" ".join((description or "").strip().split("\n\n")[0].split()) or None,
        )
        outcome = train_and_evaluate(run_config, run_dir)
    return 130 if outcome["interrupted"] else 0
