"""Typed run configs: a dataclass schema, values from a YAML/JSON file, ``key=value`` overrides."""

from __future__ import annotations

import dataclasses
import difflib
import json
import pathlib
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

C = TypeVar("C")


class ConfigError(ValueError):
    """A config file or override that does not fit the schema; the message names the key."""


def load_config(schema: type[C], path=None, overrides: Iterable[str] = ()) -> C:
    """Builds a ``schema`` instance from a config file and ``key=value`` overrides.

    ``schema`` is a dataclass whose annotated fields are the keys. Values come,
    in increasing priority, from the field defaults, the file at ``path`` (YAML,
    or JSON for a ``.json`` suffix; a flat mapping of keys to values), and the
    overrides. An override value is read as YAML, so ``steps=500`` is an int,
    ``lr=3e-3`` a float, ``cell=gru`` a string and ``text_path=null`` is ``None``.

    Supported field types: ``int``, ``float`` (an int is accepted and converted),
    ``bool``, ``str``, ``typing.Literal[...]`` of strings or ints, and any of
    these ``| None``.

    Raises:
        ConfigError: for a missing file, an unknown key, a wrong type, a value
            not among a ``Literal``'s choices, or a key given no value. The
            message names the key.

    Example:
        >>> import dataclasses, typing
        >>> @dataclasses.dataclass(frozen=True)
        ... class Config:
        ...     steps: int = 100
        ...     lr: float = 1e-3
        ...     cell: typing.Literal["lstm", "gru"] = "lstm"
        >>> load_config(Config, overrides=["steps=20", "cell=gru"])
        Config(steps=20, lr=0.001, cell='gru')
        >>> try:
        ...     load_config(Config, overrides=["steps=many"])
        ... except ConfigError as error:
        ...     print(error)
        steps: expected int, got str 'many'
    """
    _check_schema(schema)
    values: dict[str, Any] = {}
    if path is not None:
        values.update(_read_file(pathlib.Path(path), schema))
    for item in overrides:
        key, value = parse_override(item)
        _check_known(key, schema, "override")
        values[key] = value
    return from_dict(schema, values)


def from_dict(schema: type[C], values: Mapping[str, Any]) -> C:
    """A ``schema`` instance from a mapping, with the checks of :func:`load_config`."""
    _check_schema(schema)
    hints = typing.get_type_hints(schema)
    for key in values:
        _check_known(key, schema, "config")
    kwargs = {}
    for field in dataclasses.fields(schema):
        if field.name in values:
            kwargs[field.name] = _coerce(field.name, values[field.name], hints[field.name])
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{field.name}: missing; the config must give it a value")
    return schema(**kwargs)


def to_dict(config) -> dict[str, Any]:
    """The config as a plain JSON-ready dict."""
    return dataclasses.asdict(config)


def parse_override(item: str) -> tuple[str, Any]:
    """``"key=value"`` to ``(key, value)``, with the value read as YAML."""
    import yaml

    key, sep, text = item.partition("=")
    key = key.strip().removeprefix("--")
    if not sep or not key:
        raise ConfigError(f"{item!r}: expected an override of the form key=value")
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        value = text
    return key, value


def _check_schema(schema):
    if not (isinstance(schema, type) and dataclasses.is_dataclass(schema)):
        raise TypeError(f"schema: expected a dataclass type, got {schema!r}")


def _check_known(key, schema, where):
    names = [f.name for f in dataclasses.fields(schema)]
    if key in names:
        return
    close = difflib.get_close_matches(key, names, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ConfigError(f"{key}: unknown key{hint}; known keys are {', '.join(names)}")


def _read_file(path: pathlib.Path, schema) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    text = path.read_text()
    try:
        if path.suffix == ".json":
            data = json.loads(text) if text.strip() else {}
        else:
            import yaml

            data = yaml.safe_load(text) or {}
    except Exception as error:  # yaml.YAMLError or json.JSONDecodeError
        raise ConfigError(f"config file {str(path)!r} cannot be parsed: {error}") from None
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {str(path)!r}: expected a mapping of keys to values, "
            f"got {type(data).__name__}"
        )
    for key in data:
        if not isinstance(key, str):
            raise ConfigError(f"config file {str(path)!r}: keys must be strings, got {key!r}")
        _check_known(key, schema, "config")
    return data


def _type_name(tp) -> str:
    if typing.get_origin(tp) is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if _is_union(tp):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _is_union(tp) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType)


def _coerce(key: str, value, tp):
    if _is_union(tp):
        for option in typing.get_args(tp):
            try:
                return _coerce(key, value, option)
            except ConfigError:
                continue
        raise _wrong(key, value, tp)
    if tp is type(None):
        if value is None:
            return None
        raise _wrong(key, value, tp)
    if typing.get_origin(tp) is typing.Literal:
        choices = typing.get_args(tp)
        for choice in choices:
            if type(value) is type(choice) and value == choice:
                return value
        raise _wrong(key, value, tp)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _wrong(key, value, tp)
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _wrong(key, value, tp)
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise _wrong(key, value, tp)
    if tp is str:
        if isinstance(value, str):
            return value
        raise _wrong(key, value, tp)
    raise TypeError(f"{key}: field type {tp!r} is not supported by load_config")


def _wrong(key, value, tp) -> ConfigError:
    return ConfigError(f"{key}: expected {_type_name(tp)}, got {type(value).__name__} {value!r}")
