"""The durable write path: Outbox (a real SQLite file) and DurableWriter in front of a real store.

Outages and refused points are produced by ``FlakyStore``: a CONTROLLED FAILURE INJECTION around
a real EmbeddedStore (a real DuckDB file). DuckDB cannot be made to go down and come back, or to
refuse one chosen sample, on demand; the wrapper raises the errors a remote store raises
(RetryableStoreError / RejectedPointsError) and otherwise passes every call to the real store, so
what is asserted is what really landed in DuckDB.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from config.models import OutboxSettings
from store.base import (
    Aggregate,
    Point,
    RejectedPointsError,
    RetryableStoreError,
    Store,
    StoreStats,
    Windows,
    WindowValue,
)
from store.embedded import EmbeddedStore
from store.outbox import DurableWriter, Outbox
from store.reading import Quality, Reading

T0 = datetime(2024, 3, 1, 16, 0, tzinfo=UTC)
US = timedelta(microseconds=1)
TAGS = {"building": "A座", "tenant": "星巴克"}
OUTBOX_LOG = "store.outbox"


def readings(n: int, start: int = 0, device: str = "pm-1") -> list[Reading]:
    """``n`` samples, 1 s + 1 us apart, numbered by value so order and loss are visible."""
    return [
        Reading(T0 + k * timedelta(seconds=1, microseconds=1), device, "energy_kwh", float(k),
                "kWh", Quality.GOOD, TAGS)
        for k in range(start, start + n)
    ]  # fmt: skip


def stored_values(store: Store, device: str = "pm-1") -> list[float]:
    pts = store.series("energy_kwh", T0 - timedelta(days=1), T0 + timedelta(days=30), [device])
    return [v for _, v in pts.get(device, [])]


def settings(**kw: object) -> OutboxSettings:
    base: dict[str, object] = {
        "max_samples": 1_000_000,
        "batch_size": 500,
        "flush_interval": "50ms",
        "retry_initial": "10ms",
        "retry_max": "40ms",
    }
    base.update(kw)
    return OutboxSettings.model_validate(base)


def wait_for(cond: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.005)
    return cond()


def records(caplog: pytest.LogCaptureFixture, level: int, text: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == OUTBOX_LOG and r.levelno == level and text in r.getMessage()
    ]


class FlakyStore(Store):
    """Controlled failure injection around a real EmbeddedStore (see the module docstring)."""

    def __init__(self, inner: EmbeddedStore) -> None:
        self.inner = inner
        self.stats = StoreStats()
        self.down = False
        self.error: Exception | None = None  # raised instead of writing, when set
        self.refuse: Callable[[Reading], bool] = lambda r: False
        self.accepted: list[list[float]] = []  # values of each accepted batch, in order
        self.attempts = 0
        self._lock = threading.Lock()

    def write(self, readings: Sequence[Reading]) -> None:
        with self._lock:
            self.attempts += 1
            if self.down:
                raise RetryableStoreError("injected: connection refused")
            if self.error is not None:
                raise self.error
            bad = [r for r in readings if self.refuse(r)]
            if bad:
                raise RejectedPointsError(f"injected: {len(bad)} points refused")
            self.inner.write(readings)
            self.accepted.append([r.value for r in readings])

    def aggregate(
        self, metric: str, windows: Windows, fn: Aggregate, devices: Sequence[str] | None = None
    ) -> list[WindowValue]:
        return self.inner.aggregate(metric, windows, fn, devices)

    def latest(
        self,
        devices: Sequence[str] | None = None,
        metrics: Sequence[str] | None = None,
        since: datetime | None = None,
    ) -> list[Reading]:
        return self.inner.latest(devices, metrics, since)

    def series(
        self, metric: str, start: datetime, end: datetime, devices: Sequence[str] | None = None
    ) -> dict[str, list[Point]]:
        return self.inner.series(metric, start, end, devices)

    def last_before(
        self, metric: str, t: datetime, devices: Sequence[str] | None = None
    ) -> dict[str, Point]:
        return self.inner.last_before(metric, t, devices)

    def close(self) -> None:
        self.inner.close()


@pytest.fixture
def real_store(tmp_path: Path) -> Iterator[EmbeddedStore]:
    store = EmbeddedStore(tmp_path / "readings.duckdb")
    yield store
    store.close()


@pytest.fixture
def flaky(real_store: EmbeddedStore) -> FlakyStore:
    return FlakyStore(real_store)


@pytest.fixture
def make_writer(tmp_path: Path) -> Iterator[Callable[..., DurableWriter]]:
    made: list[DurableWriter] = []

    def make(store: Store, **kw: object) -> DurableWriter:
        w = DurableWriter(store, tmp_path / "outbox.db", settings(**kw))
        made.append(w)
        return w

    yield make
    for w in made:
        w.close(flush_timeout=0.1)


# -- Outbox ------------------------------------------------------------------------------------
def test_readings_round_trip_exactly_and_survive_reopening(tmp_path: Path) -> None:
    rs = [
        Reading(T0 + 123_457 * US, "pm-1", "energy_kwh", 1234.5678901, "kWh", Quality.GOOD, TAGS),
        Reading(T0 - 1 * US, "wm-1", "flow", 0.0, "m³/h", Quality.UNCERTAIN, {"区域": "地下"}),
        Reading(T0, "el-1", "state", -1.5e-300, "", Quality.BAD),
    ]
    ob = Outbox(tmp_path / "ob.db", max_samples=1000)
    ob.put(rs)
    ob.close()

    ob = Outbox(tmp_path / "ob.db", max_samples=1000)  # what put() returned for is on disk
    assert ob.depth() == 3
    token, batch = ob.take(10)
    got = list(batch)
    assert got == rs
    assert [r.time.microsecond for r in got] == [123_457, 999_999, 0]
    assert dict(got[1].tags) == {"区域": "地下"} and got[1].unit == "m³/h"
    assert got[2].quality is Quality.BAD and dict(got[2].tags) == {}
    ob.ack(token)
    assert ob.depth() == 0 and len(ob.take(10)[1]) == 0
    ob.close()


def test_take_is_a_peek_until_ack_and_returns_whole_chunks_in_order(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "ob.db", max_samples=10_000, chunk_size=1000)
    ob.put(readings(2500))  # chunks of 1000, 1000, 500

    token, batch = ob.take(2000)
    assert [r.value for r in batch] == [float(k) for k in range(2000)]
    again, same = ob.take(2000)
    assert again == token and len(same) == 2000  # not removed until ack
    ob.ack(token)
    token, batch = ob.take(1200)  # whole chunks: 500 fits, nothing more to take
    assert [r.value for r in batch] == [float(k) for k in range(2000, 2500)]
    ob.ack(token)
    ob.ack(token)  # acknowledging twice is harmless
    assert ob.depth() == 0
    ob.close()


def test_overflow_drops_the_oldest_counts_them_and_logs_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=OUTBOX_LOG)
    ob = Outbox(tmp_path / "ob.db", max_samples=1000, chunk_size=300)
    for k in range(0, 1500, 100):
        ob.put(readings(100, start=k))

    assert ob.depth() == 1000 and ob.dropped_overflow == 500
    token, batch = ob.take(5000)
    assert [r.value for r in batch] == [float(k) for k in range(500, 1500)]  # the newest 1000
    assert len(records(caplog, logging.WARNING, "full")) == 1  # one line, not one per sample

    # 50 more: the oldest chunk is trimmed by exactly 50, not dropped whole.
    ob.put(readings(50, start=1500))
    assert ob.depth() == 1000 and ob.dropped_overflow == 550
    token, batch = ob.take(5000)
    assert [r.value for r in batch][:2] == [550.0, 551.0] and len(batch) == 1000
    ob.ack(token)
    assert records(caplog, logging.INFO, "room again") != []  # the episode ended once drained

    for k in range(0, 1500, 100):  # a second episode gets its own single line
        ob.put(readings(100, start=2000 + k))
    assert len(records(caplog, logging.WARNING, "full")) == 2
    ob.close()


def test_unstorable_readings_are_dropped_alone_at_put(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ob = Outbox(tmp_path / "ob.db", max_samples=1000)
    good = readings(3)
    bad_value = Reading(T0, "pm-9", "energy_kwh", "12,5", "kWh")  # type: ignore[arg-type]
    bad_tag = Reading(T0, "pm-8", "energy_kwh", 1.0, "kWh", tags={"floor": 3})  # type: ignore[dict-item]
    ob.put([good[0], bad_value, good[1], bad_tag, good[2]])

    assert ob.depth() == 3 and ob.dropped_invalid == 2
    assert list(ob.take(10)[1]) == good
    logged = records(caplog, logging.WARNING, "unstorable")
    assert len(logged) == 2 and "pm-9" in logged[0] and "pm-8" in logged[1]
    ob.close()


def test_concurrent_puts_lose_nothing(tmp_path: Path) -> None:
    ob = Outbox(tmp_path / "ob.db", max_samples=100_000, chunk_size=64)

    def produce(device: str) -> None:
        for k in range(8):
            ob.put(readings(50, 50 * k, device))

    threads = [threading.Thread(target=produce, args=(d,)) for d in "abcd"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = list(ob.take(10_000)[1])
    assert len(got) == 1600
    for d in "abcd":  # each producer's samples keep their order
        assert [r.value for r in got if r.device == d] == [float(k) for k in range(400)]
    ob.close()


# -- DurableWriter -----------------------------------------------------------------------------
def test_everything_put_reaches_the_store(
    real_store: EmbeddedStore, make_writer: Callable[..., DurableWriter]
) -> None:
    w = make_writer(real_store)
    w.start()
    for k in range(0, 5000, 100):
        w.put(readings(100, start=k))

    assert w.flush(timeout=10)
    assert stored_values(real_store) == [float(k) for k in range(5000)]
    s = w.stats
    assert (s.written, s.depth, s.retries, s.store_up, s.last_error) == (5000, 0, 0, True, None)


def test_a_partial_batch_is_written_within_the_flush_interval(
    real_store: EmbeddedStore, make_writer: Callable[..., DurableWriter]
) -> None:
    w = make_writer(real_store, batch_size=5000, flush_interval="50ms")
    w.start()
    w.put(readings(7))  # far below batch_size, and nobody calls flush()
    assert wait_for(lambda: len(stored_values(real_store)) == 7, timeout=5)


def test_nothing_is_lost_while_the_store_is_down_and_replay_is_in_order_and_exactly_once(
    flaky: FlakyStore,
    make_writer: Callable[..., DurableWriter],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=OUTBOX_LOG)
    flaky.down = True
    w = make_writer(flaky, batch_size=400)
    w.start()
    for k in range(0, 3000, 250):
        w.put(readings(250, start=k))

    assert not w.flush(timeout=0.3)
    assert wait_for(lambda: flaky.attempts >= 3)  # it keeps trying, with back-off
    s = w.stats
    assert (s.store_up, s.depth, s.written) == (False, 3000, 0)
    assert s.retries >= 3 and s.last_error is not None and "connection refused" in s.last_error
    assert stored_values(flaky) == []
    assert len(records(caplog, logging.WARNING, "store unavailable")) == 1

    flaky.down = False
    assert w.flush(timeout=10)

    assert stored_values(flaky) == [float(k) for k in range(3000)]  # each exactly once
    assert flaky.inner.stats.written == 3000
    accepted = [v for batch in flaky.accepted for v in batch]
    assert accepted == [float(k) for k in range(3000)]  # replayed in the order put
    s = w.stats
    assert (s.store_up, s.depth, s.written) == (True, 0, 3000)
    assert len(records(caplog, logging.INFO, "accepting writes again")) == 1
    assert len(records(caplog, logging.WARNING, "store unavailable")) == 1


def test_overflow_while_the_store_is_down_keeps_the_newest(
    flaky: FlakyStore,
    make_writer: Callable[..., DurableWriter],
    caplog: pytest.LogCaptureFixture,
) -> None:
    flaky.down = True
    w = make_writer(flaky, max_samples=1000, batch_size=200)
    w.start()
    for k in range(0, 3000, 100):
        w.put(readings(100, start=k))

    assert w.stats.dropped_overflow == 2000 and w.stats.depth == 1000
    assert len(records(caplog, logging.WARNING, "full")) == 1
    flaky.down = False
    assert w.flush(timeout=10)
    assert stored_values(flaky) == [float(k) for k in range(2000, 3000)]


def test_a_refused_point_in_a_batch_of_1000_is_isolated_and_only_it_is_dropped(
    flaky: FlakyStore,
    make_writer: Callable[..., DurableWriter],
    caplog: pytest.LogCaptureFixture,
) -> None:
    flaky.refuse = lambda r: r.value == 617.0
    w = make_writer(flaky, batch_size=1000)
    w.start()
    w.put(readings(1000))

    assert w.flush(timeout=10)

    assert stored_values(flaky) == [float(k) for k in range(1000) if k != 617]
    s = w.stats
    assert (s.written, s.dropped_rejected, s.depth, s.store_up) == (999, 1, 0, True)
    logged = records(caplog, logging.WARNING, "refused")
    assert len(logged) == 1
    bad_time = (T0 + 617 * timedelta(seconds=1, microseconds=1)).isoformat()
    assert "device=pm-1" in logged[0] and "metric=energy_kwh" in logged[0]
    assert bad_time in logged[0]
    # Halving finds it in about 2 * log2(1000) writes, and it is never retried afterwards.
    assert flaky.attempts <= 2 * 10 + 1
    attempts = flaky.attempts
    w.put(readings(10, start=5000))
    assert w.flush(timeout=10) and flaky.attempts == attempts + 1


def test_several_refused_points_are_each_dropped_once(
    flaky: FlakyStore, make_writer: Callable[..., DurableWriter]
) -> None:
    refused = {0.0, 1.0, 500.0, 999.0}
    flaky.refuse = lambda r: r.value in refused
    w = make_writer(flaky, batch_size=1000)
    w.start()
    w.put(readings(1000))
    assert w.flush(timeout=10)
    assert stored_values(flaky) == [float(k) for k in range(1000) if k not in refused]
    assert w.stats.dropped_rejected == 4


def test_an_unexpected_store_error_keeps_the_data_and_is_retried(
    flaky: FlakyStore, make_writer: Callable[..., DurableWriter]
) -> None:
    flaky.error = RuntimeError("injected: a bug in a store client")
    w = make_writer(flaky)
    w.start()
    w.put(readings(20))
    assert not w.flush(timeout=0.2)
    assert w.stats.store_up is False and "a bug" in (w.stats.last_error or "")
    flaky.error = None
    assert w.flush(timeout=10)
    assert stored_values(flaky) == [float(k) for k in range(20)]


def test_a_new_writer_on_the_same_outbox_writes_what_was_left(
    tmp_path: Path, flaky: FlakyStore
) -> None:
    flaky.down = True
    w = DurableWriter(flaky, tmp_path / "outbox.db", settings(batch_size=300))
    w.start()
    w.put(readings(2500))
    assert w.close(flush_timeout=0.1) is False  # store down: what is left stays on disk

    store = EmbeddedStore(tmp_path / "after-restart.duckdb")
    try:
        w2 = DurableWriter(store, tmp_path / "outbox.db", settings(batch_size=300))
        assert w2.stats.depth == 2500
        w2.start()
        assert w2.flush(timeout=10)
        assert w2.close() is True
        assert stored_values(store) == [float(k) for k in range(2500)]
    finally:
        store.close()


def test_a_crash_between_store_write_and_ack_replays_harmlessly(
    tmp_path: Path, real_store: EmbeddedStore
) -> None:
    ob = Outbox(tmp_path / "outbox.db", max_samples=10_000)
    ob.put(readings(1200))
    _, batch = ob.take(1000)
    real_store.write(batch)  # the store has it, then the process dies before ack
    ob.close()

    w = DurableWriter(real_store, tmp_path / "outbox.db", settings())
    w.start()
    assert w.flush(timeout=10)
    w.close()
    assert stored_values(real_store) == [float(k) for k in range(1200)]


def test_flush_needs_a_started_writer_and_close_without_start_keeps_the_data(
    tmp_path: Path, real_store: EmbeddedStore
) -> None:
    w = DurableWriter(real_store, tmp_path / "outbox.db", settings())
    w.put(readings(5))
    with pytest.raises(RuntimeError, match="start"):
        w.flush(timeout=1)
    assert w.close() is False
    ob = Outbox(tmp_path / "outbox.db", max_samples=1000)
    assert ob.depth() == 5
    ob.close()
