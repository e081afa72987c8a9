"""``facmon run --role``: collection and the API in separate processes, as the compose file
runs them. Real parts: two ``facmon run`` subprocesses, the simulator's pymodbus servers on
loopback, a real influxd (behind the 1.6 write shim, tests/fixtures/influxd.py) and a schema of
its own in the running PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from config.models import InfluxStorage
from store.influx import init_influx
from tests.alerts.conftest import _pg_schema
from tests.facmon.test_operations import TOKEN, Facmon, Simulator, _site
from tests.fixtures.influxd import InfluxServer

pytestmark = pytest.mark.slow


@pytest.fixture
def sim() -> Iterator[Simulator]:
    s = Simulator(["m1"])
    try:
        yield s
    finally:
        s.close()


def test_collector_and_api_in_two_processes(
    sim: Simulator, influxd: InfluxServer, tmp_path: Path
) -> None:
    settings = InfluxStorage(url=influxd.shim_url, bucket="facmon_roles")
    init_influx(settings)
    with _pg_schema() as tickets_url:
        extra = (
            "storage:\n  backend: influxdb\n"
            f"  influxdb: {{url: '{influxd.shim_url}', bucket: facmon_roles}}\n"
            f"tickets: {{database_url: '{tickets_url}'}}\n"
        )
        (tmp_path / "c").mkdir()
        (tmp_path / "a").mkdir()
        collector_cfg = tmp_path / "c" / "site.yaml"
        collector_cfg.write_text(_site(sim.ports, tmp_path / "c", extra=extra), encoding="utf-8")
        api_cfg = tmp_path / "a" / "site.yaml"
        api_cfg.write_text(_site(sim.ports, tmp_path / "a", extra=extra), encoding="utf-8")
        collector = Facmon(collector_cfg, "--role", "collector")
        api = Facmon(api_cfg, "--role", "api")
        try:
            collector.wait_ready()
            api.wait_ready()
            auth = {"Authorization": f"Bearer {TOKEN}"}
            # The collecting process answers health checks only.
            assert httpx.get(collector.url + "/health", timeout=10).status_code == 200
            r = httpx.get(collector.url + "/api/v1/devices", headers=auth, timeout=10)
            assert r.status_code == 404
            collector.until("m1 polled", lambda h: h["collector"]["devices_up"] == 1)

            # The API process serves what the collector stored in InfluxDB.
            deadline, latest = time.monotonic() + 20, []
            while time.monotonic() < deadline and not latest:
                r = httpx.get(api.url + "/api/v1/readings/latest", headers=auth, timeout=10)
                assert r.status_code == 200, r.text
                latest = [x for x in r.json()["items"] if x["device"] == "m1"]
                time.sleep(0.5)
            assert latest, api.text()
            assert api.health()["collector"]["devices"] == 0  # it polls nothing itself
        finally:
            assert collector.stop() == 0, collector.text()
            assert api.stop() == 0, api.text()


def test_a_split_needs_a_shared_store(tmp_path: Path) -> None:
    cfg = tmp_path / "site.yaml"
    cfg.write_text(_site({"m1": 1}, tmp_path), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "facmon", "run", str(cfg), "--role", "api", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "needs storage.backend influxdb" in done.stderr
