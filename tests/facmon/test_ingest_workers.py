"""Issue 4, fault test (c): two ``facmon ingest`` worker processes on one shared subscription split
the load while both run; one is killed with SIGKILL mid-stream (no clean shutdown) and restarted
with the same worker id, as systemd does: every published sample is stored by some worker.

Real parts throughout: a private Mosquitto on a free port, the real CLI in subprocesses, each
worker's durable outbox and embedded (DuckDB) store, and an edge UplinkPublisher in this process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from collector.uplink import UplinkPublisher
from tests.collector.mosquitto import PrivateBroker, unique, wait_for
from tests.collector.uplink_sites import central_text, edge, expected_rows, samples, stored_rows

ROOT = Path(__file__).parents[2]


class Worker:
    def __init__(self, config: Path, worker: str, tmp: Path) -> None:
        self.config, self.worker = config, worker
        self.status = tmp / f"status-{worker}.json"
        self.log = tmp / f"worker-{worker}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.status.unlink(missing_ok=True)
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "facmon",
                    "ingest",
                    str(self.config),
                    "--worker",
                    self.worker,
                    "--status-file",
                    str(self.status),
                ],
                cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def stats(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads(self.status.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)
        self.proc.wait(30)
        self.proc = None


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[PrivateBroker]:
    b = PrivateBroker(tmp_path / "broker")
    b.start()
    yield b
    b.stop()


def test_two_workers_split_the_load_and_a_killed_one_loses_nothing(
    tmp_path: Path, broker: PrivateBroker
) -> None:
    prefix = unique("up")
    config = tmp_path / "central.yaml"
    config.write_text(
        central_text(broker.port, prefix, unique("ing"), unique("g"), tmp_path / "central"),
        encoding="utf-8",
    )
    workers = {w: Worker(config, w, tmp_path) for w in ("a", "b")}
    pub = UplinkPublisher(edge(broker.port, prefix, unique("edge"), tmp_path / "edge"))
    try:
        for w in workers.values():
            w.start()
        wait_for(
            lambda: all(w.stats().get("subscribed") for w in workers.values()),
            25,
            "both workers subscribed",
        )
        pub.start()
        readings = samples(0, 24_000)
        step = 200  # samples per put, as Pipeline.ingest hands over a poll
        killed_at: dict[str, int] = {}
        for k, i in enumerate(range(0, len(readings), step)):
            pub.put(readings[i : i + step])
            time.sleep(0.004)  # a stream, not one burst: the kill lands in the middle of it
            if k == len(readings) // step // 3:
                # Load split while both run: each worker has stored some.
                wait_for(
                    lambda: all(w.stats().get("samples", 0) > 0 for w in workers.values()),
                    15,
                    "both workers storing",
                )
                killed_at = {w: workers[w].stats()["samples"] for w in workers}
                workers["a"].signal(signal.SIGKILL)
        assert not workers["a"].alive()
        wait_for(lambda: pub.stats.buffered == 0, 20, "edge published everything")
        workers["a"].start()  # systemd Restart=always: same worker id, same session
        wait_for(lambda: workers["a"].stats().get("subscribed", False), 25, "worker a is back")

        def settled() -> bool:
            stats = [w.stats() for w in workers.values()]
            return all(s.get("pending") == 0 and s["store"]["outbox_depth"] == 0 for s in stats)

        # The broker re-delivers what a held unacknowledged and what it queued for a while away.
        last = -1
        while True:
            wait_for(settled, 20, "workers idle")
            total = sum(w.stats()["received"] for w in workers.values())
            if total == last:
                break
            last = total
            time.sleep(0.5)
        # Its share, queued at the broker while it was away, came to the restarted worker.
        back = workers["a"].stats()
        assert back["received"] > 0
        for w in workers.values():
            w.signal(signal.SIGTERM)  # clean stop: the outbox flushed, the store closed
    finally:
        pub.close()
        for w in workers.values():
            if w.alive():
                w.signal(signal.SIGKILL)

    assert all(n > 0 for n in killed_at.values()), killed_at
    per_worker = {
        w: stored_rows([tmp_path / "central" / f"ingest-{w}" / "readings.duckdb"]) for w in workers
    }
    assert all(per_worker.values()), {w: len(r) for w, r in per_worker.items()}
    got = {(d, m, t): (v, u, q) for rows in per_worker.values() for d, m, t, v, u, q, _ in rows}
    assert got == expected_rows(readings)  # every sample, by one worker or the other
    assert pub.stats.published == len(readings)
