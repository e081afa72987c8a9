"""Small builders the section adapters share: a figure with its unit and a status."""

from __future__ import annotations

import math

from reports.monthly.i18n import Tr
from reports.monthly.model import Figure, Status


def figure(
    tr: Tr,
    key: str,
    label: str,
    value: float | None,
    unit: str,
    *,
    digits: int = 1,
    detail: str | None = None,
    status: Status | None = None,
) -> Figure:
    if value is not None and not math.isfinite(value):
        value = None
    return Figure(
        key=key,
        label=label,
        value=None if value is None else round(value, max(digits, 0) + 3),
        unit=unit,
        text=tr.qty(value, unit, digits),
        detail=detail,
        status=status,
    )


def against(value: float | None, target: float | None, better: str = "higher") -> Status | None:
    """ok when on the good side of the target, bad otherwise; None without both numbers."""
    if value is None or target is None:
        return None
    good = value >= target if better == "higher" else value <= target
    return "ok" if good else "bad"


def percent(fraction: float | None) -> float | None:
    """0..1 -> 0..100 (the report prints every percentage with unit '%')."""
    return None if fraction is None else fraction * 100.0
