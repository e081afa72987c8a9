"""The store as one monthly build sees it: each span of raw samples is read once.

The sections of a monthly report read the same month of the same meters several times (energy
on 15-minute windows, savings per day and per hour, for the whole site and per building).
:class:`ReadCache` wraps the store for the length of one build and answers ``series_arrays``
from what it already read when an earlier read covered the metric, the devices and the span:
the rows of a span inside a cached one are the cached rows in it, exactly what the query would
return. Everything else goes to the store. It holds raw arrays, so it lives only as long as the
build that made it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from store.base import Aggregate, Point, SeriesArrays, Store, Windows, WindowValue
from store.reading import Reading, to_us


@dataclass
class _Read:
    start_us: int
    end_us: int
    devices: frozenset[str] | None  # None: every device
    arrays: dict[str, SeriesArrays]

    def covers(self, start_us: int, end_us: int, devices: Sequence[str] | None) -> bool:
        if not (self.start_us <= start_us and end_us <= self.end_us):
            return False
        return self.devices is None or (devices is not None and self.devices.issuperset(devices))


class ReadCache(Store):
    """A read-through view of ``store`` for one report build (see the module's docstring)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.stats = store.stats
        self._reads: dict[str, list[_Read]] = {}

    def cached(
        self, metric: str, start: datetime, end: datetime, devices: Sequence[str]
    ) -> dict[str, SeriesArrays] | None:
        """``series_arrays`` if what was read already covers it, else None (nothing is read)."""
        s, e = to_us(start), to_us(end)
        for read in self._reads.get(metric, []):
            if read.covers(s, e, devices):
                return _cut(read, s, e, devices)
        return None

    def series_arrays(
        self,
        metric: str,
        start: datetime,
        end: datetime,
        devices: Sequence[str] | None = None,
    ) -> dict[str, SeriesArrays]:
        if devices is not None and not devices:
            return {}
        s, e = to_us(start), to_us(end)
        for read in self._reads.get(metric, []):
            if read.covers(s, e, devices):
                return _cut(read, s, e, devices)
        arrays = self.store.series_arrays(metric, start, end, devices)
        self._reads.setdefault(metric, []).append(
            _Read(s, e, None if devices is None else frozenset(devices), arrays)
        )
        return _cut(self._reads[metric][-1], s, e, devices)

    # -- everything else is the store's -----------------------------------------------------
    def write(self, readings: Sequence[Reading]) -> None:
        self.store.write(readings)

    def aggregate(
        self,
        metric: str,
        windows: Windows,
        fn: Aggregate,
        devices: Sequence[str] | None = None,
    ) -> list[WindowValue]:
        return self.store.aggregate(metric, windows, fn, devices)

    def latest(
        self,
        devices: Sequence[str] | None = None,
        metrics: Sequence[str] | None = None,
        since: datetime | None = None,
    ) -> list[Reading]:
        return self.store.latest(devices, metrics, since)

    def series(
        self,
        metric: str,
        start: datetime,
        end: datetime,
        devices: Sequence[str] | None = None,
    ) -> dict[str, list[Point]]:
        return self.store.series(metric, start, end, devices)

    def last_before(
        self, metric: str, t: datetime, devices: Sequence[str] | None = None
    ) -> dict[str, Point]:
        return self.store.last_before(metric, t, devices)

    def close(self) -> None:
        """Drops what was read; the store itself belongs to whoever made it."""
        self._reads.clear()


def _cut(
    read: _Read, start_us: int, end_us: int, devices: Sequence[str] | None
) -> dict[str, SeriesArrays]:
    """The rows of ``[start_us, end_us)`` of ``devices`` (in the read's device order)."""
    wanted = None if devices is None else set(devices)
    out: dict[str, SeriesArrays] = {}
    for device, (t, v) in read.arrays.items():
        if wanted is not None and device not in wanted:
            continue
        if start_us == read.start_us and end_us == read.end_us:
            out[device] = (t, v)
            continue
        a, b = np.searchsorted(t, [start_us, end_us], "left").tolist()
        if b > a:
            out[device] = (t[a:b], v[a:b])
    return out
