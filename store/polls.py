"""One device poll's readings as columns, for the collector's hot path.

Building a :class:`~store.reading.Reading` per sample on the collector's event loop cost more CPU
than the Modbus request itself (about 2.5 us each, 34 per poll of a 60-register meter;
benchmarks/modbus_poll.py). The Modbus collector therefore emits a :class:`PollBatch`: one time,
device and tag set, and lists of metrics, values, units and qualities. It is still a
``Sequence[Reading]`` for any consumer that wants rows (built on demand), while
:meth:`store.columnar.ReadingBatch.from_readings` turns polls into Arrow columns without a
single ``Reading``. Kept apart from ``store.columnar`` so collectors do not import Arrow.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from itertools import chain
from typing import overload

from store.reading import Quality, Reading

__all__ = ["PollBatch", "PollBatches", "concat_readings"]


class PollBatch(Sequence[Reading]):
    """The readings of one device poll as columns: one time, device and tag set for all.

    Rows are built on each access, not kept: consumers that iterate once pay once. ``tags``
    must not change once a poll was made: its JSON is cached by object
    (``store.columnar``); ``metrics`` and ``units`` are best the same objects for every poll of
    a device, which makes their Arrow columns nearly free.
    """

    __slots__ = ("device", "metrics", "qualities", "tags", "time", "units", "values")

    def __init__(
        self,
        time: datetime,
        device: str,
        tags: Mapping[str, str],
        metrics: Sequence[str],
        values: Sequence[float],
        units: Sequence[str],
        qualities: Sequence[Quality],
    ) -> None:
        if not len(metrics) == len(values) == len(units) == len(qualities):
            raise ValueError("PollBatch columns differ in length")
        self.time = time
        self.device = device
        self.tags = tags
        self.metrics = metrics
        self.values = values
        self.units = units
        self.qualities = qualities

    def __len__(self) -> int:
        return len(self.metrics)

    @overload
    def __getitem__(self, i: int) -> Reading: ...

    @overload
    def __getitem__(self, i: slice) -> list[Reading]: ...

    def __getitem__(self, i: int | slice) -> Reading | list[Reading]:
        if isinstance(i, slice):
            return [self._row(k) for k in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError("PollBatch index out of range")
        return self._row(i)

    def __iter__(self) -> Iterator[Reading]:
        t, dev, tags = self.time, self.device, self.tags
        for metric, value, unit, q in zip(
            self.metrics, self.values, self.units, self.qualities, strict=True
        ):
            yield Reading(t, dev, metric, value, unit, q, tags)

    def __repr__(self) -> str:
        return f"PollBatch({self.device!r}, {len(self)} readings)"

    def _row(self, i: int) -> Reading:
        return Reading(
            self.time,
            self.device,
            self.metrics[i],
            self.values[i],
            self.units[i],
            self.qualities[i],
            self.tags,
        )


class PollBatches(Sequence[Reading]):
    """Several :class:`PollBatch` as one ``Sequence[Reading]``, e.g. what a hand-off gathered.

    Rows are built on demand (once, then kept);
    :meth:`store.columnar.ReadingBatch.from_readings` builds the Arrow columns straight from
    the polls' columns.
    """

    __slots__ = ("_len", "_rows", "polls")

    def __init__(self, polls: Sequence[PollBatch]) -> None:
        self.polls = polls
        self._len = sum(len(p) for p in polls)
        self._rows: list[Reading] | None = None

    def __len__(self) -> int:
        return self._len

    @overload
    def __getitem__(self, i: int) -> Reading: ...

    @overload
    def __getitem__(self, i: slice) -> list[Reading]: ...

    def __getitem__(self, i: int | slice) -> Reading | list[Reading]:
        return self._materialise()[i]

    def __iter__(self) -> Iterator[Reading]:
        # Kept once built: the alert engine and an uplink both iterate the same batch.
        return iter(self._materialise())

    def __repr__(self) -> str:
        return f"PollBatches({len(self.polls)} polls, {len(self)} readings)"

    def _materialise(self) -> list[Reading]:
        if self._rows is None:
            self._rows = list(chain.from_iterable(self.polls))
        return self._rows


def concat_readings(parts: Sequence[Sequence[Reading]]) -> Sequence[Reading]:
    """One sequence of all ``parts``: :class:`PollBatches` when every part is a
    :class:`PollBatch` (stays columnar), else a list."""
    if all(type(p) is PollBatch for p in parts):
        return PollBatches([p for p in parts if isinstance(p, PollBatch)])
    out: list[Reading] = []
    for p in parts:
        out.extend(p)
    return out
