"""Checking a config dataclass's values before anything runs: each field has the type of its
default and every number is finite, so `--lr nan` or `"lr": "abc"` in a file is refused by name
instead of training to NaN or failing deep inside a step."""

from __future__ import annotations

import dataclasses
import math
from typing import Any


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def type_name(kind: type) -> str:
    return {
        bool: "true or false",
        int: "an integer",
        float: "a number",
        str: "a string",
        dict: "a JSON object",
    }.get(kind, kind.__name__)


def matches(value: Any, kind: type) -> bool:
    """Whether `value` has the type of a default of type `kind` (an int is a float too; a bool is
    neither an int nor a float)."""
    if kind is bool or isinstance(value, bool):
        return kind is bool and isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float))
    return isinstance(value, kind)


def check_fields(config: Any, prefix: str = "") -> None:
    """ValueError naming the first field whose value has the wrong type or is not finite."""
    for f in dataclasses.fields(config):
        default, value = _default(f), getattr(config, f.name)
        if default is None:
            continue
        kind = type(default)
        if not matches(value, kind):
            raise ValueError(f"{prefix}{f.name} must be {type_name(kind)}, got {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{prefix}{f.name} must be a finite number, got {value!r}")


def check_range(
    config: Any,
    name: str,
    low: float | None = None,
    high: float | None = None,
    prefix: str = "",
    open_low: bool = False,
) -> None:
    """ValueError if `config.<name>` is below `low` (or equal, with `open_low`) or above `high`."""
    value = getattr(config, name)
    too_low = low is not None and (value <= low if open_low else value < low)
    if too_low or (high is not None and value > high):
        if high is None:
            bound = f"> {low}" if open_low else f">= {low}"
        elif low is None:
            bound = f"<= {high}"
        else:
            bound = f"in ({low}, {high}]" if open_low else f"in [{low}, {high}]"
        raise ValueError(f"{prefix}{name} must be {bound}, got {value!r}")


def float_where_default_is(value: Any, default: Any) -> Any:
    """An integer given where the default is a float becomes a float (`--set lr=1` and `--lr 1` are
    one setting, so they name one run); anything else is returned as it is."""
    return float(value) if isinstance(default, float) and type(value) is int else value


def normalise_floats(config: Any) -> None:
    """`float_where_default_is` for every field of a config dataclass."""
    for f in dataclasses.fields(config):
        setattr(config, f.name, float_where_default_is(getattr(config, f.name), _default(f)))
