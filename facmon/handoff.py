"""Hand polls from the collector's event loop to one ingest thread.

Making a batch durable costs an fsync (about 0.5-1 ms) and the alert engine may touch the
ticket database: done on the event loop for every poll, that caps a collector at a few hundred
polls per second and makes every other device late (benchmarks/modbus_poll.py, sink=direct).
Here the loop only appends to a list; a thread puts what gathered, at most every
``max_delay`` seconds, through the same ingest path MQTT uses.

What this trades: readings wait in memory for up to ``max_delay`` before they are durable, so
a crash can lose that much of the last polls -- the same exposure as a poll in flight. Past
``max_pending`` readings (the ingest path is stuck), the caller ingests itself, which slows
the collector down instead of growing memory without bound.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from store.polls import concat_readings
from store.reading import Reading

log = logging.getLogger(__name__)


class Handoff:
    def __init__(
        self,
        ingest: Callable[[Sequence[Reading]], None],
        *,
        max_delay: float = 0.1,
        max_pending: int = 200_000,
        retry_pause: float = 0.5,
    ) -> None:
        self._ingest = ingest
        self._max_delay = max_delay
        self._max_pending = max_pending
        self._retry_pause = retry_pause
        # Polls as they came (PollBatch columns from the Modbus collector): extending one list
        # of readings would build every Reading on the event loop.
        self._pending: list[Sequence[Reading]] = []
        self._pending_n = 0
        self._cond = threading.Condition()
        self._closing = False
        self._failing = False
        self.batches = 0
        self._thread = threading.Thread(target=self._run, name="facmon-ingest", daemon=True)
        self._thread.start()

    def put(self, readings: Sequence[Reading]) -> None:
        """Queue a poll's readings; called on the event loop, so it must not block."""
        with self._cond:
            if self._closing:
                raise RuntimeError("handoff is closed")
            self._pending.append(readings)
            self._pending_n += len(readings)
            overfull = self._pending_n >= self._max_pending
            if overfull:
                parts, self._pending, self._pending_n = self._pending, [], 0
        if overfull:
            self._ingest(concat_readings(parts))  # back-pressure: the caller pays

    def close(self, timeout: float = 30.0) -> None:
        """Ingest everything queued, then stop the thread."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.error("ingest thread did not finish within %.0fs; queued readings stay", timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._closing:
                    self._cond.wait(self._max_delay)  # gather: fewer, larger fsyncs
                parts, self._pending, self._pending_n = self._pending, [], 0
            if parts:
                self._ingest_until_done(concat_readings(parts))
            with self._cond:
                if self._closing and not self._pending:
                    return

    def _ingest_until_done(self, batch: Sequence[Reading]) -> None:
        while True:
            try:
                self._ingest(batch)
            except Exception:
                # Keep the batch: an outbox that cannot write now (disk full) may later.
                if not self._failing:
                    log.exception("ingest failed; retrying every %.1fs", self._retry_pause)
                    self._failing = True
                if self._closing:
                    log.error("dropping %d readings at shutdown: ingest fails", len(batch))
                    return
                threading.Event().wait(self._retry_pause)
                continue
            if self._failing:
                log.info("ingest works again")
                self._failing = False
            self.batches += 1
            return
