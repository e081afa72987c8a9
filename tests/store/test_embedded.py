"""What only the embedded (DuckDB) store does: its file, its threads, its errors.

Everything a user sees through the Store API is in test_contract.py, run on every backend.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from store.base import RejectedPointsError, RetryableStoreError, StoreError, Windows
from store.columnar import ReadingBatch
from store.embedded import EmbeddedStore
from store.reading import Quality, Reading

T0 = datetime(2024, 3, 1, 16, 0, tzinfo=UTC)
S = timedelta(seconds=1)
TAGS = {"building": "A座"}


def readings(n: int, device: str = "pm-1", start: int = 0) -> list[Reading]:
    return [
        Reading(T0 + k * S, device, "power_kw", float(k), "kW", Quality.GOOD, TAGS)
        for k in range(start, start + n)
    ]


def test_data_and_latest_survive_closing_and_reopening(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "readings.duckdb"  # missing parent directories are created
    s = EmbeddedStore(path)
    s.write(readings(100))
    s.close()
    s.close()  # closing twice is harmless

    s = EmbeddedStore(path)
    try:
        assert s.latest() == [readings(100)[-1]]
        assert len(s.series("power_kw", T0, T0 + 100 * S)["pm-1"]) == 100
    finally:
        s.close()


def test_latest_is_rebuilt_from_the_readings_when_its_table_is_empty(tmp_path: Path) -> None:
    path = tmp_path / "readings.duckdb"
    s = EmbeddedStore(path)
    s.write(readings(10) + readings(5, device="pm-2"))
    s.close()
    con = duckdb.connect(str(path))
    con.execute("DELETE FROM latest")  # e.g. a file written before the table existed
    con.close()

    s = EmbeddedStore(path)
    try:
        assert s.latest() == [readings(10)[-1], readings(5, device="pm-2")[-1]]
    finally:
        s.close()


def test_stats_count_new_rows_and_skipped_replays() -> None:
    s = EmbeddedStore(":memory:")
    s.write(readings(10))
    s.write(ReadingBatch.from_readings(readings(10, start=5)))  # the columnar path, half replay
    assert (s.stats.written, s.stats.write_calls) == (15, 2)
    assert s.stats.extra["duplicates_skipped"] == 5
    s.close()


def test_readings_utc_view_shows_timestamps_for_ad_hoc_sql(tmp_path: Path) -> None:
    path = tmp_path / "readings.duckdb"
    s = EmbeddedStore(path)
    s.write([Reading(T0 + 7 * timedelta(microseconds=1), "pm-1", "power_kw", 1.0, tags=TAGS)])
    s.close()
    con = duckdb.connect(str(path), read_only=True)
    row = con.execute("SELECT time_utc, tags->>'$.building' FROM readings_utc").fetchone()
    con.close()
    assert row == (datetime(2024, 3, 1, 16, 0, 0, 7), "A座")


def test_unstorable_content_is_rejected_not_retried() -> None:
    s = EmbeddedStore(":memory:")
    with pytest.raises(RejectedPointsError):
        s.write([Reading(T0, "pm-1", "power_kw", "n/a")])  # type: ignore[arg-type]
    with pytest.raises(RejectedPointsError):
        s.write([Reading(T0, "pm-1", "power_kw", 1.0, tags={"floor": None})])  # type: ignore[dict-item]
    assert s.latest() == []
    s.close()


def test_a_closed_store_refuses_writes_as_retryable_and_queries_as_errors() -> None:
    s = EmbeddedStore(":memory:")
    s.close()
    with pytest.raises(RetryableStoreError):  # the outbox keeps the batch
        s.write(readings(1))
    with pytest.raises(StoreError):
        s.latest()


def test_a_file_locked_by_another_process_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "readings.duckdb"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys; c = duckdb.connect(sys.argv[1]); print('ok', flush=True);"
            " sys.stdin.read()",
            str(path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ok"
        with pytest.raises(StoreError, match=str(path)):
            EmbeddedStore(path)
    finally:
        holder.communicate(input="", timeout=30)


def test_queries_from_other_threads_run_while_the_writer_writes(tmp_path: Path) -> None:
    s = EmbeddedStore(tmp_path / "readings.duckdb")
    errors: list[BaseException] = []
    done = threading.Event()

    def reader() -> None:
        w = Windows(T0, T0 + timedelta(hours=2), timedelta(minutes=10))
        try:
            while not done.is_set():
                latest = s.latest()
                assert all(r.device in ("pm-1", "pm-2") for r in latest)
                s.aggregate("power_kw", w, "mean")
                s.series("power_kw", T0, T0 + timedelta(hours=2))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for k in range(0, 4000, 250):
            s.write(readings(250, start=k) + readings(250, device="pm-2", start=k))
    finally:
        done.set()
        for t in threads:
            t.join()
    assert errors == []
    assert [r.value for r in s.latest()] == [3999.0, 3999.0]
    assert len(s.series("power_kw", T0, T0 + 4000 * S)["pm-2"]) == 4000
    s.close()


def test_the_first_write_of_a_key_wins_within_a_batch_and_against_stored_rows() -> None:
    # Replays carry identical values; if they ever differ, the embedded store keeps the first.
    s = EmbeddedStore(":memory:")
    first, second, third = (Reading(T0, "pm-1", "power_kw", v, "kW") for v in (1.0, 2.0, 3.0))
    s.write([first, second])
    s.write([third])
    assert s.series("power_kw", T0, T0 + S) == {"pm-1": [(T0, 1.0)]}
    assert s.latest() == [first]
    s.close()
