"""``facmon demo`` end to end, as a newcomer runs it: a real process, real Modbus servers on
loopback, the embedded store, the alert engine and the API over HTTP."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.slow


class Demo:
    def __init__(self, data_dir: Path, *args: str) -> None:
        env = {**os.environ, "FACMON_API_TOKEN": "demo-test-token", "PYTHONUNBUFFERED": "1"}
        self.log = data_dir.parent / f"demo-{time.monotonic_ns()}.log"
        self.out = self.log.open("w+", encoding="utf-8")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "facmon",
                "demo",
                "--data-dir",
                str(data_dir),
                "--port",
                "0",
                *args,
            ],
            stdout=self.out,
            stderr=subprocess.STDOUT,
            env=env,
            text=True,
        )
        self.url = ""
        self.started = time.monotonic()

    def text(self) -> str:
        return self.log.read_text(encoding="utf-8")

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = re.search(r"API\s+(http://127\.0\.0\.1:\d+)", self.text())
            if m and "Press Ctrl-C" in self.text():
                self.url = m.group(1)
                return
            assert self.proc.poll() is None, self.text()
            time.sleep(0.2)
        raise AssertionError("demo did not start:\n" + self.text())

    def get(self, path: str, **params: Any) -> Any:
        r = httpx.get(
            self.url + path,
            params=params,
            headers={"Authorization": "Bearer demo-test-token"},
            timeout=10,
        )
        assert r.status_code == 200, r.text
        return r.json()

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout=30)
        finally:
            self.out.close()


@pytest.fixture
def demo_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "demo"


def _wait_for(pred: Any, timeout: float, what: str, demo: Demo) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.5)
    raise AssertionError(f"{what} not seen within {timeout}s\n{demo.text()}")


def test_demo_serves_live_readings_tickets_and_energy(demo_dir: Path) -> None:
    demo = Demo(demo_dir, "--history-days", "3", "--fault-after", "2", "--escalate-after", "4")
    try:
        demo.wait_ready()
        ready = datetime.now(UTC)
        assert "Back-filling 3 days of 5-minute history" in demo.text()
        assert "History back-filled in" in demo.text()
        assert re.search(r"Alert history: \d+ tickets", demo.text()), demo.text()
        assert "demo-test-token" in demo.text()  # printed so the user can copy it
        assert f"Console  {demo.url}/console" in demo.text()
        console = httpx.get(demo.url + "/console", follow_redirects=True)
        assert console.status_code == 200 and "<html" in console.text.lower()
        assert httpx.get(demo.url + "/health").json()["status"] == "ok"
        assert httpx.get(demo.url + "/api/v1/devices").status_code == 401

        devices = demo.get("/api/v1/devices")
        items = devices["items"] if isinstance(devices, dict) else devices
        kinds = {d["kind"] for d in items}
        assert kinds == {"power_meter", "elevator", "water_meter", "sensor"}

        # Live readings from every device kind, stamped after the demo started (not back-fill):
        # within two polls of now (the lifts poll every 15 s, the rest every 5 s).
        polls = {d["id"]: d["source"]["poll_interval_s"] for d in items}
        assert sorted(set(polls.values())) == [5.0, 15.0]

        def live_kinds() -> set[str]:
            latest = demo.get("/api/v1/readings/latest", metric="device_up")
            rows = latest["items"] if isinstance(latest, dict) else latest
            fresh = [r for r in rows if r["value"] == 1 and r["age_s"] < 2 * polls[r["device"]]]
            by_id = {d["id"]: d["kind"] for d in items}
            return {by_id[r["device"]] for r in fresh}

        _wait_for(lambda: live_kinds() == kinds, 30, "live readings of all kinds", demo)

        # The MQTT sensors: the simulator publishes them to the broker the demo started, and
        # the MQTT collector stores them (fresh, so not the back-filled history's 5-min steps).
        mqtt = {"mall-shaft-busbar", "mall-b2-leak"}

        def live_mqtt() -> set[str]:
            latest = demo.get("/api/v1/readings/latest", device=sorted(mqtt))
            rows = latest["items"] if isinstance(latest, dict) else latest
            return {r["device"] for r in rows if r["age_s"] < 2 * polls[r["device"]]}

        _wait_for(lambda: live_mqtt() == mqtt, 30, "live MQTT sensor readings", demo)

        # The back-filled history has tickets already (the simulated team's work of the day
        # at least); the injected elevator fault moves exactly one lift-fault ticket of the
        # first lift: a new one, or an occurrence or reopening of the history's.
        def tickets() -> list[dict[str, Any]]:
            page = demo.get("/api/v1/tickets", limit=500)
            return list(page["items"])

        assert tickets(), "the history's tickets"

        def injected() -> list[dict[str, Any]]:
            return [
                t
                for t in tickets()
                if t["device"] == "mall-elevator-1"
                and t["fault_class"] == "elevator_fault"
                and datetime.fromisoformat(t["updated_at"]) > ready
            ]

        found = _wait_for(injected, 60, "a ticket from the injected fault", demo)
        assert len(found) == 1

        # The same fault shut a passenger in: one P1 entrapment ticket, which pages the
        # technician on call through the demo's webhook receiver at once and, with nobody
        # acknowledging, the supervisor 4 s later; its timeline shows every step.
        def trapped() -> list[dict[str, Any]]:
            return [
                t
                for t in tickets()
                if t["device"] == "mall-elevator-1"
                and t["fault_class"] == "entrapment"
                and datetime.fromisoformat(t["updated_at"]) > ready
            ]

        [p1] = _wait_for(trapped, 60, "the entrapment ticket", demo)
        assert p1["priority"] == "P1"

        def timeline() -> list[str]:
            detail = demo.get(f"/api/v1/tickets/{p1['id']}")
            return [e["kind"] for e in detail["events"]]

        _wait_for(lambda: "escalated" in timeline(), 60, "the escalation", demo)
        kinds = timeline()
        assert kinds.index("paged") < kinds.index("escalated"), kinds
        assert kinds.count("delivered") >= 1, kinds
        _wait_for(lambda: "ESCALATION -> 赵敏" in demo.text(), 30, "the supervisor's page", demo)
        assert re.search(r"PAGE -> (王强|李娜).*P1", demo.text()), demo.text()
        before = {t["number"]: t for t in tickets()}

        # Energy per meter per day from the back-filled history.
        rep = demo.get("/api/v1/reports/energy", start=_days_ago(2), end=_days_ago(0), every="1d")
        assert rep["meters"], rep
        for meter in rep["meters"]:
            assert meter["total_kwh"] > 0

        # Three days cannot hold a baseline year: the savings report says so instead of a number.
        sav = demo.get("/api/v1/reports/savings")
        assert sav["temperature_source"].startswith("sensor outdoor-temp")
        assert sav["split_weekday_weekend"] is True
        for b in sav["buildings"]:
            assert b["status"] == "insufficient_data" and b["savings_kwh"] is None
            assert any("no usable data" in w for w in b["warnings"])
    finally:
        rc = demo.stop()
    assert rc == 0, demo.text()
    assert "facmon demo stopped." in demo.text()

    # A second start reuses the data and the counters carry on (no reset flagged).
    again = Demo(demo_dir, "--fault-after", "-1")
    try:
        again.wait_ready()
        assert "skipping back-fill" in again.text()
        # The restart evaluates only what came after the stored history: no ticket twice.
        after = again.get("/api/v1/tickets", limit=500)["items"]
        assert {t["number"] for t in after} >= set(before)
        keys = [(t["device"], t["fault_class"], t["created_at"]) for t in after]
        assert len(keys) == len(set(keys))
        time.sleep(8)
        rep = again.get("/api/v1/reports/energy", start=_days_ago(1), end=_days_ago(-1), every="1d")
        for meter in rep["meters"]:
            assert meter["resets"] == 0, meter
    finally:
        assert again.stop() == 0, again.text()


def _days_ago(n: int) -> str:
    from datetime import date, timedelta

    return (date.today() - timedelta(days=n)).isoformat()
