"""Typed run configs: a dataclass schema, values from a YAML/JSON file, ``key=value`` overrides.

A field's type says what a value may be (``int``, ``float``, ``bool``, ``str``,
``Literal[...]``, any of these ``| None``); ``Annotated[int, Range(ge=1)]`` adds
the numbers it may take. Both are checked when a config is loaded, before a run
writes anything, and each error names the key, what it expected and what it got.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import math
import pathlib
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, TypeVar

from jaxrnn.train._errors import ConfigError

C = TypeVar("C")


@dataclasses.dataclass(frozen=True)
class Range:
    """The numbers a config field accepts, declared with its type.

    ``ge``/``gt`` bound it from below (``>=``/``>``), ``le``/``lt`` from above;
    the value must also be finite (never NaN or infinite).

    Example:
        >>> import dataclasses
        >>> from typing import Annotated
        >>> @dataclasses.dataclass(frozen=True)
        ... class Config:
        ...     hidden_size: Annotated[int, Range(ge=1)] = 64
        ...     dropout: Annotated[float, Range(ge=0, lt=1)] = 0.0
        >>> try:
        ...     load_config(Config, overrides=["dropout=1.0"])
        ... except ConfigError as error:
        ...     print(error)
        dropout: expected a float >= 0 and < 1, got 1.0
    """

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def check(self, key: str, value) -> None:
        """Raises :class:`ConfigError` naming ``key`` if ``value`` is outside the range."""
        finite = not isinstance(value, float) or math.isfinite(value)
        inside = finite and all(
            bound is None or test(value, bound)
            for bound, test in (
                (self.ge, lambda v, b: v >= b),
                (self.gt, lambda v, b: v > b),
                (self.le, lambda v, b: v <= b),
                (self.lt, lambda v, b: v < b),
            )
        )
        if not inside:
            kind = "an int" if isinstance(value, int) else "a float"
            raise _OutOfRange(f"{key}: expected {kind} {self.describe()}, got {value!r}")

    def describe(self) -> str:
        """The range in words, e.g. ``">= 0 and < 1"``."""
        parts = [
            f"{op} {_number(bound)}"
            for op, bound in ((">=", self.ge), (">", self.gt), ("<=", self.le), ("<", self.lt))
            if bound is not None
        ]
        return " and ".join(parts) if parts else "that is finite"


class _OutOfRange(ConfigError):
    """A value of the right type outside its :class:`Range`."""


def _number(bound) -> str:
    return str(int(bound)) if float(bound).is_integer() and abs(bound) < 1e15 else str(bound)


def load_config(schema: type[C], source=None, overrides: Iterable[str] = (), *, defaults=None) -> C:
    """Builds a ``schema`` instance from a config file (or mapping) and ``key=value`` overrides.

    ``schema`` is a dataclass whose annotated fields are the keys. Values come,
    in increasing priority, from the field defaults, ``defaults`` (a file or a
    mapping, such as an example's own config file, so that a ``source`` that
    gives only some keys is merged over it), ``source`` (a YAML file, a
    JSON file for a ``.json`` suffix, or a mapping such as the config saved with
    a checkpoint), and the overrides. An override value is read as YAML, so
    ``steps=500`` is an int, ``lr=3e-3`` a float, ``cell=gru`` a string and
    ``text_path=null`` is ``None``.

    Supported field types: ``int``, ``float`` (an int is accepted and converted),
    ``bool``, ``str``, ``dict`` (a mapping with string keys),
    ``typing.Literal[...]`` of strings or ints, any of these ``| None``, and any
    of these ``Annotated`` with a :class:`Range` or another object whose
    ``check(key, value)`` raises :class:`ConfigError`.

    Raises:
        ConfigError: for a missing file, an unknown key, a wrong type (a bool is
            not an int), a value outside its :class:`Range` or not among a
            ``Literal``'s choices, or a key given no value. The message names
            the key, what it expected and what it got.

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
    for layer in (defaults, source):
        if isinstance(layer, Mapping):
            values.update(layer)
        elif layer is not None:
            values.update(_read_file(pathlib.Path(layer), schema))
    for item in overrides:
        key, value = parse_override(item)
        _check_known(key, schema, "override")
        values[key] = value
    return from_dict(schema, values)


def from_dict(schema: type[C], values: Mapping[str, Any]) -> C:
    """A ``schema`` instance from a mapping, with the checks of :func:`load_config`."""
    _check_schema(schema)
    hints = typing.get_type_hints(schema, include_extras=True)
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


def check_config(config) -> None:
    """Checks a dataclass instance built in code, as :func:`load_config` checks a loaded one.

    Each field of a supported type must hold a value of that type, inside its
    :class:`Range` if it has one; fields of other types are left alone.

    Raises:
        ConfigError: naming the first key that does not fit.
    """
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise TypeError(f"config: expected a dataclass instance, got {config!r}")
    hints = typing.get_type_hints(type(config), include_extras=True)
    for field in dataclasses.fields(config):
        if _supported(hints[field.name]):
            _coerce(field.name, getattr(config, field.name), hints[field.name])


def parse_override(item: str) -> tuple[str, Any]:
    """``"key=value"`` to ``(key, value)``, with the value read as YAML."""
    import yaml

    key, sep, text = item.partition("=")
    key = key.strip().removeprefix("--")
    if not sep or not key:
        raise ConfigError(f"{item!r}: expected an override of the form key=value")
    try:
        value = _load_yaml(text) if text.strip() else ""
    except yaml.YAMLError:
        value = text
    return key, value


#: A float in YAML 1.2's core schema. PyYAML follows YAML 1.1, which reads ``1e-3``
#: (no dot) as the string "1e-3"; a learning rate written that way is a number.
_FLOAT = r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$"


def _load_yaml(text: str):
    """``yaml.safe_load``, reading ``1e-3`` and ``2E5`` as floats, as YAML 1.2 does."""
    import yaml

    return yaml.load(text, Loader=_loader())  # a SafeLoader


@functools.cache
def _loader():
    import re

    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:float", re.compile(_FLOAT), list("-+.0123456789")
    )
    return Loader


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
    if path.is_dir():
        raise ConfigError(f"config file {str(path)!r} is a directory; expected a YAML or JSON file")
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    text = path.read_text()
    try:
        if path.suffix == ".json":
            data = json.loads(text) if text.strip() else {}
        else:
            data = _load_yaml(text) or {}
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
    if typing.get_origin(tp) is Annotated:
        return _type_name(typing.get_args(tp)[0])
    if typing.get_origin(tp) is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if _is_union(tp):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _is_union(tp) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType)


def _supported(tp) -> bool:
    if typing.get_origin(tp) is Annotated:
        return _supported(typing.get_args(tp)[0])
    if _is_union(tp):
        return all(_supported(option) for option in typing.get_args(tp))
    if typing.get_origin(tp) is typing.Literal:
        return True
    return tp in (int, float, bool, str, dict, type(None))


def _coerce(key: str, value, tp):
    if typing.get_origin(tp) is Annotated:
        base, *extras = typing.get_args(tp)
        value = _coerce(key, value, base)
        for extra in extras:
            if callable(getattr(extra, "check", None)):  # a Range, or a check of the caller's
                extra.check(key, value)
        return value
    if _is_union(tp):
        # A value of the right type but out of range reports the range, not the type.
        out_of_range = None
        for option in typing.get_args(tp):
            try:
                return _coerce(key, value, option)
            except _OutOfRange as error:
                out_of_range = out_of_range or error
            except ConfigError:
                continue
        raise out_of_range or _wrong(key, value, tp)
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
            try:
                return float(value)
            except OverflowError:  # an int beyond float's range
                raise ConfigError(
                    f"{key}: expected a float, got an int too large for one ({str(value)[:12]}"
                    f"... with {len(str(abs(value)))} digits)"
                ) from None
        raise _wrong(key, value, tp)
    if tp is str:
        if isinstance(value, str):
            return value
        raise _wrong(key, value, tp)
    if tp is dict:
        if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
            return dict(value)
        raise _wrong(key, value, tp)
    raise TypeError(f"{key}: field type {tp!r} is not supported by load_config")


def _wrong(key, value, tp) -> ConfigError:
    return ConfigError(f"{key}: expected {_type_name(tp)}, got {type(value).__name__} {value!r}")
