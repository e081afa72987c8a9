"""What the on-call, escalation and maintenance sections check alike: local hours such as
``08:00-20:00``, and the ids the raw config declares and the message for a name that is not
one of them. Imports nothing of the config models (config.models imports those sections)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

Loc = tuple[str | int, ...]
"""Where in the raw config a problem is: keys and list indexes from the top."""

DAY_MINUTES = 24 * 60


def _clock_minutes(text: str) -> int:
    hh, sep, mm = text.strip().partition(":")
    if not (sep and hh.isdigit() and mm.isdigit() and len(mm) == 2 and len(hh) <= 2):
        raise ValueError
    h, m = int(hh), int(mm)
    if h > 24 or m > 59 or (h == 24 and m):
        raise ValueError
    return h * 60 + m


def parse_hours(v: str, *, empty_hint: str = "") -> tuple[int, int]:
    """``"08:00-20:00"`` as minutes of the local day, (480, 1200). An end before the start
    wraps past midnight (``"20:00-08:00"``); ``24:00`` ends the day. ``empty_hint`` follows
    the message for an empty window (start = end), e.g. what to write instead."""
    first, dash, second = v.partition("-")
    try:
        if not dash:
            raise ValueError
        start, end = _clock_minutes(first), _clock_minutes(second)
    except ValueError:
        raise ValueError(
            f"expected local hours such as '08:00-20:00' (or '20:00-08:00' overnight), got {v!r}"
        ) from None
    if start == DAY_MINUTES:
        raise ValueError(f"{v!r} starts at 24:00; write 00:00")
    if start == end % DAY_MINUTES:
        raise ValueError(f"{v!r} is empty{empty_hint}")
    return start, end


def section(data: Any, name: str) -> Mapping[str, Any] | None:
    """The raw config's top-level block ``name``, or None when the file or the block is not a
    mapping (the model validation reports that)."""
    block = data.get(name) if isinstance(data, Mapping) else None
    return block if isinstance(block, Mapping) else None


def declared(items: Any) -> dict[str, Mapping[str, Any]]:
    """The entries of a raw config list (e.g. ``oncall.people``) by their id, in file order;
    entries without a string id are left to the model validation to report."""
    if not isinstance(items, list):
        return {}
    return {x["id"]: x for x in items if isinstance(x, Mapping) and isinstance(x.get("id"), str)}


def unknown(what: str, name: str, known: Iterable[str], most: int = 10) -> str:
    """``unknown person 'li' (declared: wang, zhang)``: the first ``most`` declared names."""
    names = list(known)
    listed = ", ".join(names[:most]) + (", ..." if len(names) > most else "")
    return f"unknown {what} '{name}' (declared: {listed or 'none'})"
