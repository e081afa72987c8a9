"""Kill -9 the process that runs the alert engine and the pager in the middle of an episode
and of an escalation, then start it again (A13, E5): no second ticket, no repeated page, and
the escalation still comes on time. Real processes, a real ticket database (SQLite file and
PostgreSQL) and a real HTTP receiver on loopback; the chain waits 3 s of real time."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import sqlalchemy as sa

from tests.fixtures.receiver import Receiver

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import asyncio, sys
from datetime import UTC, datetime
from alerts import AlertEngine, TicketStore
from alerts.paging import Pager
from store.reading import Reading
from tests.alerts.test_paging import SECRET, paging_config

db, url = sys.argv[1:3]
chains = [{"id": "urgent", "steps": [
    {"notify": {"rotation": "primary"}}, {"wait": "3s"}, {"notify": {"person": "boss"}}]}]
config = paging_config(url, chains)
store = TicketStore(db)
engine = AlertEngine(config, store)
pager = Pager(config, store, env={"FACMON_TEST_HOOK_KEY": SECRET})

async def main() -> None:
    task = asyncio.create_task(pager.run(0.2))
    await asyncio.sleep(0.1)
    now = datetime.now(UTC)
    # The lift is still faulty: the same breach, sample after sample.
    engine.evaluate([Reading(now, "el-1", "fault_code", 31.0)], now)
    pager.kick()
    print("ready", flush=True)
    while True:
        await asyncio.sleep(0.5)
        now = datetime.now(UTC)
        engine.evaluate([Reading(now, "el-1", "fault_code", 31.0)], now)

asyncio.run(main())
"""


def _start(tmp: Path, db_url: str, url: str) -> subprocess.Popen[str]:
    script = tmp / "engine.py"
    script.write_text(SCRIPT, encoding="utf-8")
    proc = subprocess.Popen(
        [sys.executable, str(script), db_url, url],
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == "ready", line + proc.stdout.read()
    return proc


def _wait(receiver: Receiver, n: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while len(receiver.requests) < n and time.monotonic() < deadline:
        time.sleep(0.05)


def test_kill_mid_escalation(db_url: str, receiver: Receiver, tmp_path: Path) -> None:
    first = _start(tmp_path, db_url, receiver.url)
    try:
        _wait(receiver, 1, 10)
        assert len(receiver.requests) == 1
        time.sleep(0.5)
    finally:
        first.kill()  # SIGKILL: no shutdown code runs
        first.wait()
    again = _start(tmp_path, db_url, receiver.url)
    try:
        _wait(receiver, 2, 10)
        time.sleep(1.0)  # anything repeated would arrive now
    finally:
        again.kill()
        again.wait()

    bodies = receiver.bodies()
    assert [b["kind"] for b in bodies] == ["page", "escalation"]
    assert bodies[0]["recipient"]["id"] in ("li-na", "wang")
    assert bodies[1]["recipient"]["id"] == "boss"
    # On time: the wait is 3 s from the first page, whoever ran it.
    gap = receiver.requests[1].at - receiver.requests[0].at
    assert 2.5 <= gap <= 5.0, gap

    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as c:
            assert c.execute(sa.text("SELECT count(*) FROM tickets")).scalar() == 1
            assert c.execute(sa.text("SELECT count(*) FROM alerts")).scalar() == 1
            kinds = [k for (k,) in c.execute(sa.text("SELECT kind FROM ticket_events ORDER BY id"))]
    finally:
        engine.dispose()
    assert kinds.count("paged") == 1 and kinds.count("escalated") == 1
