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
import numpy.typing as npt

from store.base import (
    Aggregate,
    CounterPoints,
    Point,
    SeriesArrays,
    Store,
    Windows,
    WindowValue,
)
from store.reading import Reading, to_us


@dataclass
class _Read:
    start_us: int
    end_us: int
    devices: frozenset[str] | None  # None: every device
    arrays: dict[str, SeriesArrays]
    # ``counter_points`` reads: how many samples each point stands for, per device
    weights: dict[str, npt.NDArray[np.int64] | None] | None = None

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
        self._counter_reads: dict[str, list[_Read]] = {}  # ``counter_points``

    def cached(
        self, metric: str, start: datetime, end: datetime, devices: Sequence[str]
    ) -> dict[str, SeriesArrays] | None:
        """Samples in the span if what was read already covers it, else None (nothing is read).

        From ``series_arrays`` reads, or from ``counter_points`` reads: those may hold only the
        first and last sample of each 15-minute bucket, which still puts a sample in exactly
        the hours (and any grid-aligned windows) that have one.
        """
        s, e = to_us(start), to_us(end)
        for read in self._reads.get(metric, []) + self._counter_reads.get(metric, []):
            if read.covers(s, e, devices):
                return _cut(read, s, e, devices)
        return None

    def counter_points(
        self,
        metric: str,
        start: datetime,
        end: datetime,
        devices: Sequence[str] | None = None,
    ) -> dict[str, CounterPoints]:
        if devices is not None and not devices:
            return {}
        s, e = to_us(start), to_us(end)
        for read in self._counter_reads.get(metric, []):
            if read.covers(s, e, devices):
                # Both spans are on the 15-minute grid, so a cut keeps whole buckets: the
                # points of a summarised bucket stay together with their weights.
                assert read.weights is not None
                out: dict[str, CounterPoints] = {}
                for d, (t, v) in _cut(read, s, e, devices).items():
                    w = read.weights[d]
                    if w is not None:
                        a, b = np.searchsorted(read.arrays[d][0], [s, e], "left").tolist()
                        w = w[a:b]
                    out[d] = (t, v, w)
                return out
        for read in self._reads.get(metric, []):
            if read.covers(s, e, devices):
                return {d: (t, v, None) for d, (t, v) in _cut(read, s, e, devices).items()}
        got = self.store.counter_points(metric, start, end, devices)
        read = _Read(
            s,
            e,
            None if devices is None else frozenset(devices),
            {d: (t, v) for d, (t, v, _) in got.items()},
            {d: w for d, (_, _, w) in got.items()},
        )
        self._counter_reads.setdefault(metric, []).append(read)
        return got

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
        self._counter_reads.clear()


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
