"""Time-weighted state durations with honest unknown time (../shared/domain.md, "Uptime").

Each sample holds its value from its own time until the next sample, but for at most
``gap_tolerance`` (typically three poll intervals): time no sample covers is UNKNOWN, never up
and never down.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

Point = tuple[datetime, float]


@dataclass(frozen=True, slots=True)
class StateWindow:
    device: str
    start: datetime
    end: datetime
    durations: dict[float, float]  # state value -> seconds
    unknown: float  # seconds covered by no sample

    @property
    def coverage(self) -> float:
        total = (self.end - self.start).total_seconds()
        return 1.0 - self.unknown / total if total > 0 else 0.0


def state_windows(
    device: str,
    points: Sequence[Point],
    bounds: Sequence[tuple[datetime, datetime]],
    gap_tolerance: timedelta,
) -> list[StateWindow]:
    """One :class:`StateWindow` per bound; windows no sample reaches are omitted."""
    spans: list[tuple[datetime, datetime, float]] = []
    for k, (t, v) in enumerate(points):
        until = t + gap_tolerance
        if k + 1 < len(points):
            until = min(until, points[k + 1][0])
        if until > t:
            spans.append((t, until, v))
    # Spans are sorted and disjoint, bounds sorted and disjoint: one sweep over both.
    out: list[StateWindow] = []
    k = 0
    for ws, we in bounds:
        while k < len(spans) and spans[k][1] <= ws:
            k += 1
        durations: dict[float, float] = {}
        covered = 0.0
        j = k
        while j < len(spans) and spans[j][0] < we:
            s0, s1, v = spans[j]
            secs = (min(s1, we) - max(s0, ws)).total_seconds()
            durations[v] = durations.get(v, 0.0) + secs
            covered += secs
            j += 1
        if durations:
            total = (we - ws).total_seconds()
            out.append(StateWindow(device, ws, we, durations, max(0.0, total - covered)))
    return out
