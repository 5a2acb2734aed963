"""Typed configuration: plain dataclasses round-tripped to YAML.

Unknown keys are an error (a typo in a recipe must not silently fall back to a
default), and so is a key given twice in one mapping (YAML would silently keep
the last); nested dataclasses are built recursively, string enums are
checked against their members, numbers must be finite and inside the range a
field declares (:func:`bounded`).  :func:`number` gives command-line flags the
same check, so a ``nan`` or an out-of-range value is refused before any work.
"""
from __future__ import annotations

import argparse
import dataclasses
import enum
import math
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml

from tfadvq.errors import ConfigError

T = TypeVar("T")

RANGE = "tfadvq.range"  # dataclass field metadata key: (low, high, above), see check_number


def bounded(default: Any, low: float | None = None, high: float | None = None, above: bool = False) -> Any:
    """A dataclass field whose numbers must lie in ``[low, high]`` (``(low, high]`` with ``above``),
    checked by :func:`from_dict` before any stage runs."""
    return dataclasses.field(default=default, metadata={RANGE: (low, high, above)})


def check_number(value: float, where: str, low: float | None = None, high: float | None = None,
                 above: bool = False) -> float:
    """``value`` if finite and in ``[low, high]`` (``(low, high]`` with ``above``; None: unbounded),
    else a :class:`ConfigError` naming ``where``."""
    problem = _number_problem(value, low, high, above)
    if problem:
        raise ConfigError(f"{where}: {problem}")
    return value


def _number_problem(value: float, low: float | None, high: float | None, above: bool) -> str:
    if not math.isfinite(value):
        return f"{value!r} is not a finite number"
    if low is not None and (value <= low if above else value < low) or high is not None and value > high:
        return f"{value!r} is out of range; accepted: {_describe_range(low, high, above)}"
    return ""


def _describe_range(low: float | None, high: float | None, above: bool) -> str:
    first = f"{'>' if above else '>='} {low}" if low is not None else ""
    last = f"<= {high}" if high is not None else ""
    return " and ".join(p for p in (first, last) if p) or "any finite number"


def number(kind: type = float, low: float | None = None, high: float | None = None, above: bool = False
           ) -> Callable[[str], float]:
    """An argparse ``type=``: ``kind`` (int or float), finite, in ``[low, high]`` (``above``: > low)."""

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}"
                                             ) from None
        problem = _number_problem(value, low, high, above)
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def from_dict(cls: type[T], data: dict[str, Any] | None, where: str = "") -> T:
    """Build dataclass ``cls`` from ``data``; unknown keys and bad enum values raise.

    A key ``cls`` renamed is listed in its ``renamed`` class attribute (``{old: new}``), so an old
    file fails naming the new key instead of "unknown key"."""
    data = {} if data is None else data
    where = where or cls.__name__
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    renamed = [f"{key!r} is now {cls.renamed[key]!r}" for key in unknown if key in getattr(cls, "renamed", {})]
    if renamed:  # a key an earlier version accepted: say its new name, never map it silently
        raise ConfigError(f"{where}: {'; '.join(renamed)} (renamed; write the new key)")
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; accepted: {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    kwargs = {name: _bounded(fields[name], _coerce(hints[name], value, f"{where}.{name}"), f"{where}.{name}")
              for name, value in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as exc:  # missing required field
        raise ConfigError(f"{where}: {exc}") from None


def _bounded(field: dataclasses.Field, value: Any, where: str) -> Any:
    """``value`` checked against the range ``field`` declares (:func:`bounded`), if any and a number."""
    bounds = field.metadata.get(RANGE)
    if bounds is not None and isinstance(value, (int, float)) and not isinstance(value, bool):
        check_number(value, where, *bounds)
    return value


def _coerce(hint: Any, value: Any, where: str) -> Any:
    """``value`` checked against (and, where YAML is ambiguous, converted to) the type ``hint``.

    YAML 1.1 reads ``1e-3`` as a string, so a float field accepts a string that
    parses as a number; any other mismatch is a :class:`ConfigError` naming the key,
    instead of a ``TypeError`` deep inside training.
    """
    origin = typing.get_origin(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            if len(args) < len(typing.get_args(hint)):
                return None
            raise ConfigError(f"{where}: a value is required, got null")
        errors = []
        for arg in args:
            try:
                return _coerce(arg, value, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else
                          f"{where}: {value!r} matches none of {[_name(a) for a in args]}")
    if dataclasses.is_dataclass(hint):
        if isinstance(value, hint):
            return value
        return from_dict(hint, value, where)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        try:
            return hint(value)
        except ValueError:
            raise ConfigError(
                f"{where}: {value!r} is not one of {[m.value for m in hint]}"
            ) from None
    if hint is bool:
        return _expect(value, bool, where)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise ConfigError(f"{where}: expected a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return check_number(float(value), where)
    if hint is str:
        return _expect(value, str, where)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        args = typing.get_args(hint)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
            return tuple(_coerce(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
        item = args[0] if args else Any
        items = [_coerce(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        key_hint, value_hint = typing.get_args(hint) or (Any, Any)
        return {_coerce(key_hint, k, f"{where}"): _coerce(value_hint, v, f"{where}.{k}")
                for k, v in value.items()}
    return value


def _expect(value: Any, kind: type, where: str) -> Any:
    if not isinstance(value, kind):
        raise ConfigError(f"{where}: expected {_name(kind)}, got {value!r}")
    return value


def _name(hint: Any) -> str:
    return getattr(hint, "__name__", str(hint))


def to_dict(obj: Any) -> Any:
    """Plain-data view of a dataclass (enums as their values), ready for YAML/JSON."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def identity(obj: Any) -> Any:
    """:func:`to_dict` of ``obj`` without the dataclass fields that hold their default: what a
    recipe fingerprint hashes.

    A field added to a config later, with a default that keeps the old behaviour,
    then leaves finished stages reusable (fingerprints cover configs and data,
    not tfadvq's own code, defaults included: after changing code, re-run with
    ``--from``).
    """
    if dataclasses.is_dataclass(obj):
        kept = {}
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if f.default is not dataclasses.MISSING:
                default = f.default
            elif f.default_factory is not dataclasses.MISSING:
                default = f.default_factory()
            else:
                kept[f.name] = identity(value)
                continue
            if to_dict(value) != to_dict(default):
                kept[f.name] = identity(value)
        return kept
    if isinstance(obj, (list, tuple)):
        return [identity(v) for v in obj]
    if isinstance(obj, dict):
        return {k: identity(v) for k, v in obj.items()}
    return to_dict(obj)


class DuplicateKeyError(yaml.YAMLError):
    """A YAML mapping gives one key twice (YAML itself would silently keep the last)."""


class _StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        lines: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if key in lines:
                raise DuplicateKeyError(f"key {key!r} is given twice (lines {lines[key]} and {line}); "
                                        "give each key once")
            lines[key] = line
        return super().construct_mapping(node, deep)


def read_yaml(path: str | Path, what: str = "configuration file") -> Any:
    """The plain data of a YAML file; a missing file, bad YAML or a duplicate key is a ConfigError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such {what}")
    try:
        return yaml.load(path.read_text(), Loader=_StrictLoader)  # noqa: S506 (a SafeLoader)
    except DuplicateKeyError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None


def load_yaml(cls: type[T], path: str | Path) -> T:
    """Read a YAML file into dataclass ``cls``, naming the file in every error."""
    return from_dict(cls, read_yaml(path), where=str(path))


def dump_yaml(obj: Any, path: str | Path) -> None:
    """Write a dataclass as YAML that :func:`load_yaml` reads back to an equal object."""
    Path(path).write_text(yaml.safe_dump(to_dict(obj), sort_keys=False))
