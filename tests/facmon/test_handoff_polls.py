"""Handoff with the Modbus collector's PollBatch columns: they reach ingest whole, in order."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from types import MappingProxyType

from facmon.handoff import Handoff
from store.polls import PollBatch, PollBatches
from store.reading import Quality, Reading

T0 = datetime(2024, 3, 1, 16, 0, tzinfo=UTC)
TAGS = MappingProxyType({"building": "A"})


def poll(k: int) -> PollBatch:
    return PollBatch(
        T0 + timedelta(seconds=k),
        "pm-1",
        TAGS,
        ["v", "device_up"],
        [float(k), 1.0],
        ["V", ""],
        [Quality.GOOD, Quality.GOOD],
    )


def test_polls_stay_columnar_and_arrive_in_order() -> None:
    got: list[Sequence[Reading]] = []
    done = threading.Event()

    def ingest(batch: Sequence[Reading]) -> None:
        got.append(batch)
        if sum(len(b) for b in got) >= 6:
            done.set()

    h = Handoff(ingest, max_delay=0.05)
    try:
        for k in range(3):
            h.put(poll(k))
        assert done.wait(5)
    finally:
        h.close()
    assert all(isinstance(b, PollBatches) for b in got)  # never turned into rows on the way
    assert [r.value for b in got for r in b if r.metric == "v"] == [0.0, 1.0, 2.0]


def test_a_stuck_ingest_path_makes_the_caller_ingest_itself() -> None:
    gate = threading.Event()
    callers: list[str] = []

    def ingest(batch: Sequence[Reading]) -> None:
        callers.append(threading.current_thread().name)
        if threading.current_thread().name == "facmon-ingest":
            gate.wait(5)

    h = Handoff(ingest, max_delay=0.01, max_pending=4)
    try:
        h.put(poll(0))  # taken by the ingest thread, which then hangs
        while not callers:
            threading.Event().wait(0.01)
        h.put(poll(1))
        h.put(poll(2))  # 4 pending: the caller pays
        assert callers[-1] == threading.current_thread().name
    finally:
        gate.set()
        h.close()
