"""Typed, validated dataclasses from plain data: the checks every params section shares.

Why a module of its own: `cadenza.config` (the params sections) and every model family's
`Net` (`cadenza.models.specs`) validate the same way, and neither may import the other's
world (config would pull torch through the model files). This module imports neither.

`from_dict` rejects unknown keys, missing keys, wrong types and non-finite or 64-bit-overflowing
numbers; a dataclass's `__post_init__` checks its ranges with `check`; either way the
`ParamsError` names the dotted path (`models.chord_lstm.train.lr`).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, Literal

INT64_MAX = 2**63 - 1  # any integer param: numpy/torch hold it in an int64


class ParamsError(ValueError):
    """A param is unknown, missing, mistyped or out of range; the message names it."""


def from_dict(cls: type, data: Any, where: str) -> Any:
    """Build dataclass `cls` from `data`, checking keys, types and ranges recursively."""
    if not isinstance(data, dict):
        raise ParamsError(f"{where or 'params'}: expected a mapping, got {_show(data)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ParamsError(f"{_join(where, unknown[0])}: unknown key (allowed: {', '.join(fields)})")
    hints = typing.get_type_hints(cls)
    values = {}
    for name, f in fields.items():
        key = _join(where, name)
        if name in data:
            values[name] = _coerce(hints[name], data[name], key)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ParamsError(f"{key}: missing required key")
    try:
        return cls(**values)
    except RangeError as err:
        raise ParamsError(f"{_join(where, err.name)}: {err.message}") from None


def _coerce(hint: Any, value: Any, key: str) -> Any:
    if hint is Any:  # checked later by its owner (ModelParams.net by the family's Net)
        return value
    origin = typing.get_origin(hint)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return from_dict(hint, value, key)
    if origin is list:
        (item_type,) = typing.get_args(hint)
        if not isinstance(value, list):
            raise ParamsError(f"{key}: expected a list, got {_show(value)}")
        return [_coerce(item_type, v, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        _, item_type = typing.get_args(hint)
        if not isinstance(value, dict):
            raise ParamsError(f"{key}: expected a mapping, got {_show(value)}")
        return {str(k): _coerce(item_type, v, _join(key, str(k))) for k, v in value.items()}
    if origin is Literal:
        allowed = typing.get_args(hint)
        if value not in allowed:
            raise ParamsError(f"{key}: must be one of {list(allowed)}, got {_show(value)}")
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in typing.get_args(hint):
            return None
        (inner,) = [a for a in typing.get_args(hint) if a is not type(None)]
        return _coerce(inner, value, key)
    if hint is bool:
        if not isinstance(value, bool):
            raise ParamsError(f"{key}: expected true/false, got {_show(value)}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParamsError(
                f"{key}: expected an integer, got {_show(value)}"
                f"{_number_hint(value, want_int=True)}"
            )
        if not -INT64_MAX - 1 <= value <= INT64_MAX:  # numpy and torch would overflow
            raise ParamsError(f"{key}: must fit in a 64-bit integer (|value| < 2**63), got {value}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ParamsError(
                f"{key}: expected a number, got {_show(value)}{_number_hint(value, want_int=False)}"
            )
        if not math.isfinite(value):  # .nan / .inf pass every range check silently
            raise ParamsError(f"{key}: expected a finite number, got {_show(value)}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ParamsError(f"{key}: expected a string, got {_show(value)}")
        return value
    raise TypeError(f"{key}: unsupported param type {hint!r}")  # a bug in this module


def _number_hint(value: Any, want_int: bool) -> str:
    """Why a number was refused, when YAML 1.1 read it as something else: PyYAML reads `1e9`
    and `1e-3` as strings (its floats need a dot and a signed exponent), and a float such as
    `1.0e+9` is not an integer even when it has no fraction."""
    if isinstance(value, float) and want_int and math.isfinite(value) and value.is_integer():
        return f" (write it as an integer: {int(value)})"
    if not isinstance(value, str):
        return ""
    try:
        number = float(value)
    except ValueError:
        return ""
    if not math.isfinite(number):
        return ""
    if want_int:
        written = str(int(number)) if number.is_integer() else "an integer"
    else:
        written = repr(number)
    return f" (YAML reads {value!r} as text, not a number: write {written})"


class RangeError(ValueError):
    """Raised by `check` inside a dataclass's `__post_init__`; `from_dict` turns it into a
    `ParamsError` that names the dotted path of the field."""

    def __init__(self, name: str, message: str) -> None:
        self.name, self.message = name, message


def check(ok: bool, name: str, message: str) -> None:
    """Range check for a `__post_init__` (params sections, each model family's `Net`):
    `from_dict` adds the dotted path of the field to the message."""
    if not ok:
        raise RangeError(name, message)


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _show(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"
