"""Durations in config files: ``250ms``, ``10s``, ``5m``, ``1h``, ``1d`` or seconds."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(v: Any) -> Any:
    """Accept ``250ms``, ``10s``, ``5m``, ``1h``, ``1d`` or a number of seconds."""
    if isinstance(v, bool):
        raise ValueError("expected a duration such as 10s, 5m or 1h")
    if isinstance(v, int | float):
        return timedelta(seconds=v)
    if isinstance(v, str):
        m = _DURATION.match(v)
        if not m:
            raise ValueError(f"expected a duration such as 10s, 5m or 1h, got {v!r}")
        return timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2)])
    return v


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
