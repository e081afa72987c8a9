"""The store interface: writes, and the few query primitives every report is built from.

A backend implements ``write``, ``aggregate``, ``latest``, ``series`` and ``last_before``;
``counter_delta`` and ``state_durations`` are computed here, once, from ``series`` and
``last_before`` so that glitch, rollover and coverage rules are identical on every backend
(``tests/store/test_contract.py`` runs unchanged against each one). A backend may answer
``counter_points`` from summaries (InfluxDB: ``store.rollups``) as long as the counter rules
see exactly what every sample would give them.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

import numpy as np
import numpy.typing as npt

from store.counters import CounterArrays, CounterWindow, WindowBounds, counter_arrays
from store.reading import Reading, to_us
from store.rollups import on_grid
from store.states import StateWindow, state_windows

Aggregate = Literal["mean", "min", "max", "last"]
AGGREGATES: tuple[Aggregate, ...] = ("mean", "min", "max", "last")

Point = tuple[datetime, float]
# (time in microseconds since the epoch as int64, value as float64), in time order.
SeriesArrays = tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]
# SeriesArrays plus how many raw samples each point stands for (None: one each).
CounterPoints = tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.int64] | None]


class StoreError(Exception):
    """A write or query failed. ``retryable`` tells the outbox whether to keep the batch."""

    retryable: bool = False


class RetryableStoreError(StoreError):
    """The store is unreachable or overloaded (refused, timeout, 5xx, 429): try again later."""

    retryable = True


class RejectedPointsError(StoreError):
    """The store refused the content of a batch (400/422): retrying the same batch cannot help.

    The outbox splits such a batch to isolate the offending points and drops only those.
    """

    retryable = False


@dataclass(frozen=True, slots=True)
class WindowValue:
    """Aggregate of one metric of one device over ``[start, start + every)``."""

    device: str
    start: datetime
    value: float


@dataclass(frozen=True, slots=True)
class Windows:
    """Half-open windows ``[start, end)`` of length ``every``; the last is clipped to ``end``."""

    start: datetime
    end: datetime
    every: timedelta

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("window bounds must be timezone-aware")
        if self.end <= self.start:
            raise ValueError("window end must be after its start")
        if self.every <= timedelta(0):
            raise ValueError("window length must be positive")

    def bounds(self) -> list[tuple[datetime, datetime]]:
        out: list[tuple[datetime, datetime]] = []
        t = self.start
        while t < self.end:
            nxt = min(t + self.every, self.end)
            out.append((t, nxt))
            t = nxt
        return out


@dataclass(slots=True)
class StoreStats:
    """Counters a backend exposes for health reporting."""

    written: int = 0
    write_calls: int = 0
    extra: dict[str, int] = field(default_factory=dict)


class Store(abc.ABC):
    """A time-series store of :class:`Reading` records."""

    stats: StoreStats

    # -- writes -----------------------------------------------------------------------------
    @abc.abstractmethod
    def write(self, readings: Sequence[Reading]) -> None:
        """Store a batch. Idempotent on ``Reading.key``: a replayed batch adds nothing.

        Raises :class:`RetryableStoreError` or :class:`RejectedPointsError`.
        """

    # -- backend query primitives -----------------------------------------------------------
    @abc.abstractmethod
    def aggregate(
        self,
        metric: str,
        windows: Windows,
        fn: Aggregate,
        devices: Sequence[str] | None = None,
    ) -> list[WindowValue]:
        """``fn`` of the non-BAD values per device and window; empty windows are omitted.

        Sorted by device, then window start.
        """

    @abc.abstractmethod
    def latest(
        self,
        devices: Sequence[str] | None = None,
        metrics: Sequence[str] | None = None,
        since: datetime | None = None,
    ) -> list[Reading]:
        """The most recent reading (any quality) per device and metric, sorted by both."""

    @abc.abstractmethod
    def series(
        self,
        metric: str,
        start: datetime,
        end: datetime,
        devices: Sequence[str] | None = None,
    ) -> dict[str, list[Point]]:
        """Raw non-BAD points in ``[start, end)`` per device, in time order."""

    def series_arrays(
        self,
        metric: str,
        start: datetime,
        end: datetime,
        devices: Sequence[str] | None = None,
    ) -> dict[str, SeriesArrays]:
        """``series`` as arrays: what reports over months of minute samples read.

        This default builds them from ``series``; a backend that can answer in columns
        overrides it so that no Python object is made per sample.
        """
        out: dict[str, SeriesArrays] = {}
        for device, pts in self.series(metric, start, end, devices).items():
            out[device] = (
                np.fromiter((to_us(t) for t, _ in pts), dtype=np.int64, count=len(pts)),
                np.fromiter((v for _, v in pts), dtype=np.float64, count=len(pts)),
            )
        return out

    def counter_points(
        self,
        metric: str,
        start: datetime,
        end: datetime,
        devices: Sequence[str] | None = None,
    ) -> dict[str, CounterPoints]:
        """Enough of a counter's samples in ``[start, end)`` to interpolate it at every
        15-minute UTC grid edge exactly as all its samples would; ``start`` and ``end`` are on
        the grid.

        This default is every sample (``series_arrays``). A backend that keeps summaries
        (``store.rollups``) may return, for a stretch where the counter only rises, just the
        first and last sample of each 15-minute bucket with the number of samples each stands
        for; anywhere the counter drops it must return every sample.
        """
        return {
            d: (t, v, None) for d, (t, v) in self.series_arrays(metric, start, end, devices).items()
        }

    @abc.abstractmethod
    def last_before(
        self, metric: str, t: datetime, devices: Sequence[str] | None = None
    ) -> dict[str, Point]:
        """The last non-BAD point strictly before ``t`` per device."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release files and connections."""

    # -- primitives computed once for every backend -----------------------------------------
    def counter_delta(
        self,
        metric: str,
        windows: Windows,
        devices: Sequence[str] | None = None,
        rollover: float | None = None,
        lookback: timedelta = timedelta(days=1),
    ) -> list[CounterWindow]:
        """Use of a cumulative counter per device and window (see ``store.counters``).

        ``lookback`` before and after the windows is read as ordinary data: the samples before
        the start anchor the first window (a lone anchor could itself be a glitch) and the
        ones after the end let a glitch at the edge be recognised.
        """
        wb = WindowBounds.of(windows.bounds())
        out: list[CounterWindow] = []
        for device, ca in self.counter_delta_arrays(
            metric, windows, devices, rollover, lookback, wb
        ).items():
            out.extend(ca.windows(device, wb.bounds))
        return out

    def counter_delta_arrays(
        self,
        metric: str,
        windows: Windows,
        devices: Sequence[str] | None = None,
        rollover: float | None = None,
        lookback: timedelta = timedelta(days=1),
        bounds: WindowBounds | None = None,
    ) -> dict[str, CounterArrays]:
        """:meth:`counter_delta` as arrays over every window, per device in sorted order.

        What reports over hundreds of meters and thousands of windows use: no object per
        window. ``bounds`` (``windows.bounds()`` converted once) may be passed by a caller that
        already has it. Devices with no sample in the span read are omitted.
        """
        wb = bounds if bounds is not None else WindowBounds.of(windows.bounds())
        start, end = windows.start - lookback, windows.end + lookback
        if wb.on_grid() and on_grid(to_us(start), to_us(end)):
            points = self.counter_points(metric, start, end, devices)
        else:
            points = {
                d: (t, v, None)
                for d, (t, v) in self.series_arrays(metric, start, end, devices).items()
            }
        return {
            device: counter_arrays(t, v, wb, rollover=rollover, weights=w)
            for device, (t, v, w) in sorted(points.items())
        }

    def state_durations(
        self,
        metric: str,
        windows: Windows,
        gap_tolerance: timedelta,
        devices: Sequence[str] | None = None,
    ) -> list[StateWindow]:
        """Seconds spent in each state value per device and window; uncovered time is unknown.

        Every sample holds its value until the next sample, for at most ``gap_tolerance``.
        Devices with no sample that covers any window are omitted (unknown throughout).
        """
        pts = self.series(metric, windows.start, windows.end, devices)
        for device, p in self.last_before(metric, windows.start, devices).items():
            if p[0] >= windows.start - gap_tolerance:
                pts.setdefault(device, []).insert(0, p)
        out: list[StateWindow] = []
        for device in sorted(pts):
            out.extend(state_windows(device, pts[device], windows.bounds(), gap_tolerance))
        return out
