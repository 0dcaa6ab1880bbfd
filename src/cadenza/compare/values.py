"""Values as `cadenza compare` reads them: a metric is an int or float (NaN included), equal
to another at 4 significant digits; strings, booleans and a run's recorded set-up are
settings, not measurements."""

from __future__ import annotations

import math
from typing import Any, TypeGuard

SIGNIFICANT = 4
# below this a value counts as 0 when deciding what changed: an overlap of 1e-61 and one of
# 1e-52 both say "none", and 4 significant digits alone would call that a change
TINY = 1e-9
# numbers that describe a run's set-up rather than measure it (a benchmark file records
# its `params`, its `seed`); strings and booleans are config whatever their key
CONFIG_PREFIXES = ("params.",)
CONFIG_KEYS = {"seed", "prefer_fallback"}
Values = dict[str, Any]


def is_number(value: Any) -> TypeGuard[int | float]:
    """A metric value: int or float, NaN included (a loss a model has not got), not bool."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def rounded(value: Any) -> Any:
    """`value` at 4 significant digits, so that float noise compares equal; non-numbers,
    ints and NaN as they are."""
    if not is_number(value) or isinstance(value, int) or not math.isfinite(value):
        return value
    return float(f"{value:.{SIGNIFICANT}g}")


def changed(old: Any, new: Any) -> bool:
    """Differ at 4 significant digits, or present on one side only (NaN equals NaN;
    magnitudes below TINY equal 0)."""
    old, new = (0.0 if finite(v) and abs(v) < TINY else rounded(v) for v in (old, new))
    if _nan(old) and _nan(new):
        return False
    return old != new


def is_config(metric: str, old: Any, new: Any) -> bool:
    """A setting recorded next to the metrics, not a measurement: a non-number on either
    side (`dataset: jsb`, `trained_on`), or a key that names the run's set-up."""
    if any(v is not None and not is_number(v) for v in (old, new)):
        return True
    return metric in CONFIG_KEYS or metric.startswith(CONFIG_PREFIXES)


def fmt(value: Any) -> str:
    """4 significant digits, without the `1.234e+04` form for whole numbers below 10^15."""
    if value is None:
        return "-"
    if not is_number(value):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if not math.isfinite(value):
        return str(value)
    value = rounded(value)
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.{SIGNIFICANT}g}"


def one_side(metrics: dict[str, dict], side: str) -> Values:
    return {key: v.get(side) for key, v in metrics.items()}


def finite(value: Any) -> bool:
    return is_number(value) and math.isfinite(value)


def _nan(value: Any) -> bool:
    return is_number(value) and math.isnan(value)
