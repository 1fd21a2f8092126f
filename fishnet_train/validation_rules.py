"""The primitives every check of the options is made of: each failure one ``UserError`` naming the key,
the value and how to fix it (``validation`` and ``validation_apps`` build on them)."""
from __future__ import annotations

import math
from typing import Any, Iterable, NoReturn, Optional

from .errors import UserError


def fail(message: str) -> NoReturn:
    raise UserError(message)


def check_choice(key: str, value: Any, allowed: Iterable[str]) -> None:
    allowed = tuple(allowed)
    if value not in allowed:
        fail(f"{key}={value!r} is not one of {', '.join(allowed)}")


def check_number(key: str, value: Optional[float], low: float = -math.inf, high: float = math.inf,
                 low_open: bool = False, high_open: bool = False, optional: bool = False) -> None:
    """``value`` finite and within the interval (``optional``: None passes)."""
    if value is None and optional:
        return
    if value is None or not math.isfinite(value):
        fail(f"{key} must be a finite number, got {value}")
    below = value <= low if low_open else value < low
    above = value >= high if high_open else value > high
    if (below or above) and high == math.inf and low == 0:
        fail(f"{key} must be {'positive' if low_open else 'zero or more'}, got {value}")
    if below or above:
        interval = f"{'(' if low_open else '['}{_fmt(low)}, {_fmt(high)}{')' if high_open else ']'}"
        fail(f"{key} must be in {interval}, got {value}")


def _fmt(bound: float) -> str:
    return "inf" if bound == math.inf else "-inf" if bound == -math.inf else f"{bound:g}"


def check_positive(key: str, value: Optional[int], optional: bool = False, hint: str = "") -> None:
    if value is None and optional:
        return
    if value is None or value <= 0:
        fail(f"{key} must be positive{' or null' if optional else ''}, got {value}{hint}")


def check_unit_interval(key: str, value: float) -> None:
    check_number(key, value, 0.0, 1.0, high_open=True)
