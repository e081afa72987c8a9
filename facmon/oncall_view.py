"""``facmon oncall who|schedule|gaps``: the on-call answers of ``alerts.oncall`` as text.

The clock is read here, at the edge; ``alerts.oncall`` gets every time passed in. Times print
in the site's time zone, names last on a line because CJK names are two columns wide.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import TextIO
from zoneinfo import ZoneInfo

from alerts.oncall import Gap, OnCallAnswer, Shift, coverage_gaps, shifts, who_is_on_call
from config.models import Person, SiteConfig

_CLOCK = re.compile(r"^\d{1,2}:\d{2}$")


@dataclass(frozen=True)
class View:
    """What every oncall subcommand needs: the config, its zone, the time asked and an output."""

    cfg: SiteConfig
    tz: ZoneInfo
    at: datetime
    out: TextIO


def parse_when(text: str, tz: ZoneInfo, now: datetime) -> datetime:
    """``now``, ``HH:MM`` (today), ``YYYY-MM-DD`` (midnight) or ``YYYY-MM-DD HH:MM``, local to
    ``tz`` unless an offset is given (``...T09:00+08:00``, ``...Z``)."""
    text = text.strip()
    if text.lower() == "now":
        return now
    if _CLOCK.match(text):
        clock = time.fromisoformat(text.zfill(5))
        return datetime.combine(now.astimezone(tz).date(), clock, tzinfo=tz)
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"expected 'now', HH:MM, YYYY-MM-DD or 'YYYY-MM-DD HH:MM', got {text!r}"
        ) from None
    return t if t.tzinfo is not None else t.replace(tzinfo=tz)


def _when(t: datetime, tz: ZoneInfo) -> str:
    return f"{t.astimezone(tz):%a %Y-%m-%d %H:%M}"


def _span(t: timedelta) -> str:
    hours = t.total_seconds() / 3600
    if hours >= 48:
        return f"{hours / 24:.1f} d".replace(".0 d", " d")
    return f"{hours:.1f} h".replace(".0 h", " h")


def _who(p: Person | None) -> str:
    return f"{p.name} ({p.id})" if p is not None else "nobody"


def _rotation_label(cfg: SiteConfig, rotation: str | None) -> str:
    rot = next((r for r in cfg.oncall.rotations if r.id == rotation), None)
    return f"rotation {rotation} ({rot.name})" if rot is not None else "no rotation"


def _source(cfg: SiteConfig, a: OnCallAnswer | Shift) -> str:
    if a.source == "override":
        why = f", {a.reason}" if a.reason else ""
        scope = f" of rotation {a.rotation}" if a.rotation else ""
        return f"override{scope}{why}"
    if a.source == "rotation":
        return _rotation_label(cfg, a.rotation)
    if a.source == "fallback":
        return "fallback (no override or rotation covers this time)"
    return "nobody: no override or rotation covers this time and there is no oncall.fallback"


def _contacts(cfg: SiteConfig, p: Person) -> list[tuple[str, str]]:
    kinds = {c.id: c.type for c in cfg.channels}
    rows: list[tuple[str, str]] = []
    if p.phone:
        rows.append(("phone", p.phone))
    if p.email:
        rows.append(("email", p.email))
    if p.contacts:
        rows.append(("reach via", ", ".join(f"{c} ({kinds.get(c, '?')})" for c in p.contacts)))
    return rows


def who(v: View, rotation: str | None) -> int:
    """Print who is on call at ``v.at``; 1 when nobody is."""
    oncall = v.cfg.oncall
    a = who_is_on_call(oncall, v.tz, v.at, rotation)
    scope = f" in rotation {rotation}" if rotation else ""
    asked = f"at {_when(v.at, v.tz)} ({v.tz.key})"
    if a.person is None:
        print(f"Nobody is on call{scope} {asked}.", file=v.out)
    else:
        print(f"{a.person.name} ({a.person.id}) is on call{scope} {asked}", file=v.out)
    rows = [("source", _source(v.cfg, a))]
    rows.append(("since", _when(a.start, v.tz) if a.start else "more than 35 days ago"))
    if a.end is None:
        rows.append(("until", "beyond the next 35 days"))
    else:
        nxt = who_is_on_call(oncall, v.tz, a.end, rotation)
        rows.append(("until", f"{_when(a.end, v.tz)}, then {_who(nxt.person)} ({nxt.source})"))
    if a.person is not None:
        rows += _contacts(v.cfg, a.person) or [("contact", "none declared")]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"  {key:<{width}}  {value}", file=v.out)
    return 0 if a.person is not None else 1


def _scopes(cfg: SiteConfig, rotation: str | None) -> list[str | None]:
    # Each rotation is its own team's duty: a gap in one is not filled by another.
    if rotation is not None:
        return [rotation]
    return [r.id for r in cfg.oncall.rotations] or [None]


def _title(cfg: SiteConfig, scope: str | None) -> str:
    return _rotation_label(cfg, scope) if scope else "the site (overrides and fallback)"


def schedule(v: View, days: int, rotation: str | None) -> int:
    """Print the shifts of the next ``days`` days, one block per rotation."""
    end = v.at + timedelta(days=days)
    print(f"On-call schedule {_when(v.at, v.tz)} to {_when(end, v.tz)} ({v.tz.key})", file=v.out)
    for scope in _scopes(v.cfg, rotation):
        print(f"\n{_title(v.cfg, scope)}", file=v.out)
        print(f"  {'from':<20}  {'until':<20}  {'source':<9}  who", file=v.out)
        for s in shifts(v.cfg.oncall, v.tz, v.at, end, scope):
            mark = "  <- gap" if s.source == "nobody" else ""
            print(
                f"  {_when(s.start, v.tz):<20}  {_when(s.end, v.tz):<20}  {s.source:<9}  "
                f"{_who(s.person)}{_why(s)}{mark}",
                file=v.out,
            )
    return 0


def _why(s: Shift) -> str:
    return f" [{s.reason}]" if s.reason else ""


def gaps(v: View, days: int, rotation: str | None) -> int:
    """Warn about stretches of the next ``days`` days no override or rotation covers; 1 when
    any of them has nobody (no fallback) to page."""
    end = v.at + timedelta(days=days)
    print(f"Coverage {_when(v.at, v.tz)} to {_when(end, v.tz)} ({v.tz.key})", file=v.out)
    found: list[Gap] = []
    for scope in _scopes(v.cfg, rotation):
        here = coverage_gaps(v.cfg.oncall, v.tz, v.at, end, scope)
        found += here
        if not here:
            print(f"\n{_title(v.cfg, scope)}: covered throughout", file=v.out)
            continue
        n = len(here)
        print(f"\n{_title(v.cfg, scope)}: {n} gap{'s' if n != 1 else ''}", file=v.out)
        for g in here:
            who_then = (
                f"fallback {_who(g.fallback)} is paged"
                if g.fallback is not None
                else "NOBODY is paged"
            )
            print(
                f"  {_when(g.start, v.tz)} to {_when(g.end, v.tz)}  ({_span(g.duration)})  "
                f"{who_then}",
                file=v.out,
            )
    bare = [g for g in found if not g.covered_by_fallback]
    if bare:
        print(
            f"\nWARNING: {len(bare)} gap{'s' if len(bare) != 1 else ''} with nobody to page; "
            "add a rotation member, an override or oncall.fallback",
            file=v.out,
        )
        return 1
    if found:
        print(f"\nThe fallback takes every gap ({_who(found[0].fallback)}).", file=v.out)
    return 0
