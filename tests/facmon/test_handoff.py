"""The hand-off from the collector's event loop to the ingest thread."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from facmon.handoff import Handoff
from store.reading import Reading

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def rd(i: int) -> Reading:
    return Reading(T0 + timedelta(seconds=i), "pm-1", "active_power", float(i), "kW")


class Ingest:
    def __init__(self, fail_first: int = 0) -> None:
        self.got: list[Reading] = []
        self.calls = 0
        self.fail_first = fail_first
        self.threads: set[str] = set()

    def __call__(self, readings: Sequence[Reading]) -> None:
        self.calls += 1
        self.threads.add(threading.current_thread().name)
        if self.calls <= self.fail_first:
            raise OSError("disk full")
        self.got.extend(readings)


def test_polls_arrive_in_order_in_few_batches_off_the_callers_thread() -> None:
    ingest = Ingest()
    h = Handoff(ingest, max_delay=0.05)
    for i in range(300):
        h.put([rd(i)])
    h.close()
    assert [r.value for r in ingest.got] == [float(i) for i in range(300)]
    assert ingest.threads == {"facmon-ingest"}
    assert ingest.calls <= 3  # gathered, not one fsync per poll


def test_a_failing_ingest_keeps_the_batch_and_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="facmon.handoff")
    ingest = Ingest(fail_first=3)
    h = Handoff(ingest, max_delay=0.01, retry_pause=0.01)
    h.put([rd(1), rd(2)])
    deadline = time.monotonic() + 5
    while len(ingest.got) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    h.close()
    assert [r.value for r in ingest.got] == [1.0, 2.0]
    assert sum("ingest failed" in r.getMessage() for r in caplog.records) == 1
    assert sum("ingest works again" in r.getMessage() for r in caplog.records) == 1


def test_past_max_pending_the_caller_ingests_itself() -> None:
    ingest = Ingest()
    h = Handoff(ingest, max_delay=10.0, max_pending=5)
    h.put([rd(i) for i in range(5)])
    assert len(ingest.got) == 5  # ingested on this thread, not queued without bound
    assert threading.current_thread().name in ingest.threads
    h.close()
    with pytest.raises(RuntimeError):
        h.put([rd(9)])
