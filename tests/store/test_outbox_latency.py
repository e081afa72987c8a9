"""The durable writer's write timings (``WriterStats.write_batches``, ``write_seconds``,
``last_write_ms``), which facmon.selfmetrics turns into a mean latency per interval. A real
EmbeddedStore; the failed writes are injected with the FlakyStore of test_outbox."""

from __future__ import annotations

from pathlib import Path

from store.embedded import EmbeddedStore
from store.outbox import DurableWriter
from tests.store.test_outbox import FlakyStore, readings, settings, wait_for


def test_successful_writes_are_timed_and_failed_ones_are_not(tmp_path: Path) -> None:
    store = FlakyStore(EmbeddedStore(tmp_path / "readings.duckdb"))
    writer = DurableWriter(store, tmp_path / "outbox.db", settings(batch_size=100))
    writer.start()
    try:
        fresh = writer.stats
        assert (fresh.write_batches, fresh.write_seconds, fresh.last_write_ms) == (0, 0.0, None)
        store.down = True
        writer.put(readings(50))
        assert wait_for(lambda: store.attempts >= 2)
        assert writer.stats.write_batches == 0  # a refused attempt is no write
        store.down = False
        writer.put(readings(250, start=50))
        assert writer.flush(10)
        s = writer.stats
        assert s.written == 300 and s.write_batches == len(store.accepted) >= 3
        assert s.write_seconds > 0
        assert s.last_write_ms is not None and 0 < s.last_write_ms <= s.write_seconds * 1000
    finally:
        writer.close()
        store.close()
