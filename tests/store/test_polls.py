"""PollBatch: the collector's columnar poll, as rows, as Arrow columns, through outbox and store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType

import pytest

from store.columnar import InvalidReadingError, ReadingBatch
from store.embedded import EmbeddedStore
from store.outbox import Outbox
from store.polls import PollBatch, PollBatches, concat_readings
from store.reading import Quality, Reading

T0 = datetime(2024, 3, 1, 16, 0, 0, 123000, tzinfo=UTC)
TAGS = MappingProxyType({"building": "A座", "floor": "3F"})


def poll(device: str = "pm-1", k: int = 0) -> PollBatch:
    return PollBatch(
        T0 + timedelta(seconds=k),
        device,
        TAGS,
        ["voltage_a", "energy", "device_up"],
        [230.5 + k, 1234.5 + k, 1.0],
        ["V", "kWh", ""],
        [Quality.GOOD, Quality.UNCERTAIN, Quality.GOOD],
    )


def rows(p: PollBatch) -> list[Reading]:
    return [
        Reading(p.time, p.device, m, v, u, q, TAGS)
        for m, v, u, q in zip(p.metrics, p.values, p.units, p.qualities, strict=True)
    ]


def test_a_poll_is_a_sequence_of_readings() -> None:
    p = poll()
    assert len(p) == 3
    assert list(p) == rows(p)
    assert p[0] == rows(p)[0] and p[-1] == rows(p)[-1]
    assert p[1:] == rows(p)[1:]
    with pytest.raises(IndexError):
        p[3]
    with pytest.raises(ValueError):
        PollBatch(T0, "d", TAGS, ["a"], [1.0, 2.0], ["V"], [Quality.GOOD])


def test_columns_of_polls_equal_columns_of_their_readings() -> None:
    polls = [poll("pm-1", 0), poll("pm-2", 0), poll("pm-1", 1)]
    both = concat_readings(polls)
    assert isinstance(both, PollBatches)
    expected = [r for p in polls for r in rows(p)]
    assert list(both) == expected and len(both) == 9 and both[4] == expected[4]
    fast = ReadingBatch.from_readings(both)
    slow = ReadingBatch.from_readings(expected)
    assert fast.table.equals(slow.table)
    assert list(fast) == expected
    assert ReadingBatch.from_readings(polls[0]).table.equals(
        ReadingBatch.from_readings(rows(polls[0])).table
    )


def test_mixed_parts_become_a_list() -> None:
    plain = rows(poll("pm-9"))
    mixed = concat_readings([poll(), plain])
    assert isinstance(mixed, list) and mixed == [*rows(poll()), *plain]


def test_polls_go_through_the_outbox_and_into_the_store(tmp_path: Path) -> None:
    polls = [poll(f"pm-{i}", k) for k in range(3) for i in range(4)]
    box = Outbox(tmp_path / "outbox.db", max_samples=1000, chunk_size=5)
    box.put(PollBatches(polls))
    assert box.depth() == 36
    token, batch = box.take(1000)
    assert list(batch) == [r for p in polls for r in rows(p)]
    store = EmbeddedStore(tmp_path / "s.duckdb")
    try:
        store.write(batch)
        box.ack(token)
        latest = store.latest(devices=["pm-0"])
        assert [(r.metric, r.value, r.time) for r in latest] == [
            ("device_up", 1.0, T0 + timedelta(seconds=2)),
            ("energy", 1236.5, T0 + timedelta(seconds=2)),
            ("voltage_a", 232.5, T0 + timedelta(seconds=2)),
        ]
    finally:
        store.close()
        box.close()


def test_latest_is_merged_before_it_is_read_and_when_the_store_closes(tmp_path: Path) -> None:
    # Newest rows wait in memory between merges: whatever the timing, readers and a reopened
    # file see the newest sample of every series.
    path = tmp_path / "s.duckdb"
    store = EmbeddedStore(path)
    store.write(ReadingBatch.from_readings(poll("pm-1", 0)))
    store.write(ReadingBatch.from_readings(poll("pm-1", 5)))
    assert {r.metric: r.value for r in store.latest()}["voltage_a"] == 235.5
    store.write(ReadingBatch.from_readings(poll("pm-1", 9)))
    store.close()
    reopened = EmbeddedStore(path)
    try:
        assert {r.metric: r.time for r in reopened.latest()}["energy"] == T0 + timedelta(seconds=9)
    finally:
        reopened.close()


def test_a_poll_that_cannot_be_stored_is_refused_as_a_whole() -> None:
    naive = PollBatch(datetime(2024, 1, 1), "d", TAGS, ["m"], [1.0], [""], [Quality.GOOD])
    with pytest.raises(InvalidReadingError):
        ReadingBatch.from_readings(PollBatches([naive]))
