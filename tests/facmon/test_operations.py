"""Operations features on a running ``facmon run`` process: SIGHUP reloads the config without a
gap in any device's samples and refuses a broken file, SIGTERM flushes the outbox to the store
and exits 0, JSON logs, and ``facmon status``.

Real parts throughout: the process is a subprocess, the devices are the simulator's pymodbus
servers on loopback (run on a thread of the test process), the store is the embedded DuckDB
file, read back after the process exits.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest

from config import load_config_text
from facmon.health import components, healthy
from facmon.logs import JsonFormatter, TextFormatter, redact, resolve_format, secret_values
from facmon.reload import plan_reload
from simulator import SimulatedBuilding

pytestmark = pytest.mark.slow

TOKEN = "ops-test-token-3f9a1c"
POLL_S = 1.0


class Simulator:
    """Power meters served by the simulator's real Modbus TCP servers, on a loop of their own
    so they answer while the test blocks."""

    def __init__(self, device_ids: list[str]) -> None:
        cfg = load_config_text(_site({d: 15000 + i for i, d in enumerate(device_ids)}), env={})
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.sim = SimulatedBuilding(cfg, seed=3)
        start = self.sim.start(now=datetime.now(UTC), free_ports=True)
        self.ports = asyncio.run_coroutine_threadsafe(start, self.loop).result(20)
        self.runner = asyncio.run_coroutine_threadsafe(self.sim.run(0.5), self.loop)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.sim.stop(), self.loop).result(20)
        self.runner.result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def sim() -> Iterator[Simulator]:
    s = Simulator(["m1", "m2"])
    try:
        yield s
    finally:
        s.close()


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _site(
    ports: dict[str, int],
    data_dir: Path | None = None,
    *,
    unit_ids: dict[str, int] | None = None,
    extra: str = "",
) -> str:
    lines = [
        "site: {id: ops, name: Ops Test, timezone: Asia/Shanghai}",
        "buildings:",
        "  - {id: b1, name: B1, floor_area_m2: 1000, floors: 2}",
        "devices:",
    ]
    for dev, port in ports.items():
        lines += [
            f"  - id: {dev}",
            f"    name: Meter {dev}",
            "    kind: power_meter",
            "    location: {building: b1}",
            f"    poll_interval: {POLL_S}s",
            "    source:",
            "      type: modbus_tcp",
            "      host: 127.0.0.1",
            f"      port: {port}",
            f"      unit_id: {(unit_ids or {}).get(dev, 1)}",
            "      profile: generic_power_meter_3p",
            "      timeout: 500ms",
            "      retries: 0",
        ]
    if data_dir is not None:
        lines.append(f"data_dir: {data_dir}")
    return "\n".join(lines) + "\n" + extra


class Facmon:
    """``facmon run CONFIG`` as an operator starts it."""

    def __init__(self, config: Path, *args: str) -> None:
        env = {**os.environ, "FACMON_API_TOKEN": TOKEN, "PYTHONUNBUFFERED": "1"}
        env.pop("FACMON_LOG_FORMAT", None)
        stamp = time.monotonic_ns()
        self.out_path = config.parent / f"run-{stamp}.out"
        self.err_path = config.parent / f"run-{stamp}.err"
        self.out = self.out_path.open("w", encoding="utf-8")
        self.err = self.err_path.open("w", encoding="utf-8")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "facmon", "run", str(config), "--port", "0", *args],
            stdout=self.out,
            stderr=self.err,
            env=env,
            text=True,
        )
        self.url = ""

    def text(self) -> str:
        return self.out_path.read_text(encoding="utf-8") + self.err_path.read_text(encoding="utf-8")

    def log(self) -> str:
        return self.err_path.read_text(encoding="utf-8")

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = re.search(r"API: (http://127\.0\.0\.1:\d+)", self.text())
            if m:
                self.url = m.group(1)
                return
            assert self.proc.poll() is None, self.text()
            time.sleep(0.1)
        raise AssertionError("facmon did not start:\n" + self.text())

    def health(self) -> dict[str, Any]:
        body: dict[str, Any] = httpx.get(self.url + "/health", timeout=10).json()
        return body

    def until(self, what: str, pred: Callable[[dict[str, Any]], Any], timeout: float = 10) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            v = pred(self.health())
            if v:
                return v
            time.sleep(0.2)
        raise AssertionError(f"{what}: not within {timeout}s\n{self.health()}\n{self.text()}")

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        finally:
            self.out.close()
            self.err.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.out.close()
        self.err.close()


def _polls(h: dict[str, Any], dev: str) -> int:
    state = h["collector"]["device_states"].get(dev)
    return int(state["polls"]) if state else 0


def _device_up_times(db: Path, dev: str) -> list[float]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        rows = con.execute(
            "SELECT time FROM readings WHERE device = ? AND metric = 'device_up' ORDER BY time",
            [dev],
        ).fetchall()
    finally:
        con.close()
    return [t / 1e6 for (t,) in rows]


def _count(db: Path) -> int:
    con = duckdb.connect(str(db), read_only=True)
    try:
        row = con.execute("SELECT count(*) FROM readings").fetchone()
    finally:
        con.close()
    assert row is not None
    return int(row[0])


def test_sighup_applies_a_new_device_without_a_gap_and_refuses_a_broken_file(
    sim: Simulator, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    site = tmp_path / "site.yaml"
    site.write_text(_site({"m1": sim.ports["m1"]}, data), encoding="utf-8")
    fm = Facmon(site)
    try:
        fm.wait_ready()
        fm.until("m1 polled", lambda h: _polls(h, "m1") >= 3)

        # A device and a rule added: the new device polls, m1 keeps its pace.
        rule = (
            "rules:\n  - {id: overload, name: Overload, metric: active_power, above: 1.0e9, "
            "severity: minor, fault_class: overload}\n"
        )
        ports = {"m1": sim.ports["m1"], "m2": sim.ports["m2"]}
        site.write_text(_site(ports, data, extra=rule), encoding="utf-8")
        reload_at = time.time()
        fm.signal(signal.SIGHUP)
        h = fm.until("m2 up after the reload", lambda h: h["collector"]["devices_up"] == 2 and h)
        last = h["config"]["last_reload"]
        assert last["ok"] is True and "added 1 device(s): m2" in last["message"], last
        assert "rules changed" in last["message"]
        assert h["config"]["reloads"] == 1
        devices = httpx.get(
            fm.url + "/api/v1/devices", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
        ).json()
        items = devices["items"] if isinstance(devices, dict) else devices
        assert {d["id"] for d in items} == {"m1", "m2"}  # the API serves the new config

        # A broken file: its problem is logged with file, line and field; nothing changes.
        broken = _site(ports, data, unit_ids={"m2": 300}, extra=rule)
        line = broken.splitlines().index("      unit_id: 300") + 1
        site.write_text(broken, encoding="utf-8")
        m2_polls = _polls(h, "m2")
        fm.signal(signal.SIGHUP)
        h = fm.until("reload refused", lambda h: h["config"]["last_reload"]["ok"] is False and h)
        assert f"site.yaml:{line} devices[1].source.unit_id" in fm.log(), fm.log()
        assert "the running config stays" in fm.log()
        rows = {r["component"]: r for r in h["components"]}
        assert rows["config"]["state"] == "degraded"
        fm.until("m2 still polled", lambda h: _polls(h, "m2") >= m2_polls + 2)
        assert fm.health()["collector"]["devices_up"] == 2
    finally:
        rc = fm.stop()
    assert rc == 0, fm.text()

    m1 = _device_up_times(data / "readings.duckdb", "m1")
    m2 = _device_up_times(data / "readings.duckdb", "m2")
    assert m2 and m2[0] > reload_at, "m2's samples start after the reload"
    assert m1[0] < reload_at < m1[-1]
    gaps = [b - a for a, b in itertools.pairwise(m1)]
    # A lost poll would show as a gap of two intervals; the swap polls at once.
    assert max(gaps) < 1.9 * POLL_S, [round(g, 2) for g in gaps]


def test_sigterm_flushes_the_outbox_to_the_store_and_exits_0(
    sim: Simulator, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    site = tmp_path / "site.yaml"
    # The writer would wait a minute before its first write: everything collected is still in
    # the outbox when SIGTERM arrives.
    slow = "storage:\n  outbox: {flush_interval: 60s, batch_size: 100000}\n"
    site.write_text(_site({"m1": sim.ports["m1"]}, data, extra=slow), encoding="utf-8")
    fm = Facmon(site)
    try:
        fm.wait_ready()
        h = fm.until("samples queued", lambda h: h["store"]["received"] >= 40 and h)
        assert h["store"]["written"] == 0 and h["store"]["outbox_depth"] > 0
        before = int(h["store"]["received"])
    finally:
        rc = fm.stop()
    assert rc == 0, fm.text()
    m = re.search(r"stopped; (\d+) samples written this run, (\d+) received", fm.log())
    assert m, fm.log()
    written, received = int(m.group(1)), int(m.group(2))
    assert written == received >= before
    assert _count(data / "readings.duckdb") == written
    outbox = sqlite3.connect(data / "outbox.db")
    try:
        assert outbox.execute("SELECT count(*) FROM chunks").fetchone() == (0,)
    finally:
        outbox.close()
    assert "SIGTERM: stopping" in fm.log()


def test_json_logs_and_facmon_status(sim: Simulator, tmp_path: Path) -> None:
    data = tmp_path / "data"
    site = tmp_path / "site.yaml"
    site.write_text(_site({"m1": sim.ports["m1"], "dead": _dead_port()}, data), encoding="utf-8")
    fm = Facmon(site, "--log-format", "json")
    try:
        fm.wait_ready()
        fm.until(
            "m1 up, dead down",
            lambda h: h["collector"]["devices_up"] == 1 and h["collector"]["devices_down"] == 1,
        )

        def status(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "facmon", "status", *args],
                capture_output=True,
                text=True,
                timeout=30,
                env={**os.environ, "FACMON_API_TOKEN": TOKEN},
            )

        out = status("--url", fm.url)
        assert out.returncode == 1, out  # a device is down
        head, *lines = out.stdout.split("\n\n")[0].splitlines()
        state_at, detail_at = head.index("STATE"), head.index("DETAIL")
        table = {ln[:state_at].strip(): ln[state_at:detail_at].strip() for ln in lines}
        assert table == {
            "api": "up",
            "collector": "degraded",
            "mqtt": "off",
            "store": "up",
            "outbox": "up",
            "alert engine": "up",
            "ticket database": "up",
            "paging": "up",
            "config": "up",
            "device dead": "down",
        }, out.stdout
        assert "not healthy: collector, device dead" in out.stdout

        js = status("--url", fm.url, "--json")
        body = json.loads(js.stdout)
        assert js.returncode == 1
        assert body["collector"]["device_states"]["m1"]["up"] is True
        assert {r["component"] for r in body["components"]} >= {"api", "store", "config"}

        gone = status("--url", f"http://127.0.0.1:{_dead_port()}")
        assert gone.returncode == 1 and re.search(r"^api\s+down", gone.stdout, re.M), gone
    finally:
        rc = fm.stop()
    assert rc == 0, fm.text()

    log = fm.log()
    assert TOKEN not in log
    records = [json.loads(line) for line in log.splitlines()]  # every line is one JSON object
    for r in records:
        assert {"time", "level", "logger", "message"} <= set(r), r
        assert datetime.fromisoformat(r["time"]).utcoffset() is not None
    down = [r for r in records if "is down" in r["message"]]
    assert down and down[0]["device"] == "dead" and down[0]["level"] == "WARNING"
    assert any(r["message"].startswith("stopped;") for r in records)


# -- the pieces, in-process ----------------------------------------------------------------


def test_json_formatter_fields_exceptions_and_redaction() -> None:
    redact(["s3cret-value-123"])
    logger = logging.getLogger("facmon.test")
    try:
        raise ValueError("bad s3cret-value-123")
    except ValueError:
        rec = logger.makeRecord(
            "facmon.test",
            logging.ERROR,
            __file__,
            1,
            "poll of %s failed",
            ("m1",),
            sys.exc_info(),
            extra={"device": "m1", "when": datetime(2026, 1, 1, tzinfo=UTC)},
        )
    line = JsonFormatter().format(rec)
    assert "\n" not in line and "s3cret-value-123" not in line
    obj = json.loads(line)
    assert obj["message"] == "poll of m1 failed" and obj["device"] == "m1"
    assert obj["level"] == "ERROR" and obj["logger"] == "facmon.test"
    assert obj["when"].startswith("2026-01-01") and obj["time"].endswith("+00:00")
    assert "ValueError: bad ***" in obj["exception"]
    assert "s3cret-value-123" not in TextFormatter().format(rec)

    assert resolve_format(None, {"FACMON_LOG_FORMAT": "JSON"}) == "json"
    assert resolve_format("text", {"FACMON_LOG_FORMAT": "json"}) == "text"
    with pytest.raises(ValueError, match="FACMON_LOG_FORMAT"):
        resolve_format(None, {"FACMON_LOG_FORMAT": "xml"})


def test_plan_reload_keeps_what_needs_a_restart(tmp_path: Path) -> None:
    extra = "api:\n  tokens: [{name: ops, token: '${OPS_TOKEN}', role: admin}]\n"
    old = load_config_text(_site({"m1": 1502}, tmp_path, extra=extra), env={"OPS_TOKEN": "a" * 20})
    assert secret_values(old) == ["a" * 20]
    new_text = _site({"m1": 1502, "m2": 1503}, tmp_path / "elsewhere", extra=extra)
    new = load_config_text(new_text, env={"OPS_TOKEN": "b" * 20})
    plan = plan_reload(old, new)
    assert plan.added == ["m2"] and plan.modbus and plan.engine and not plan.mqtt
    assert plan.needs_restart == ["data_dir", "api"]
    assert plan.config.data_dir == old.data_dir and plan.config.api == old.api
    assert "needs a restart: data_dir, api" in plan.summary()
    same = plan_reload(old, old)
    assert not same.any_change and same.summary() == "config unchanged"


def test_components_verdicts() -> None:
    status: dict[str, Any] = {
        "collector": {
            "devices": 2,
            "devices_up": 2,
            "devices_down": 0,
            "device_states": {},
        },
        "store": {
            "backend": "embedded",
            "up": True,
            "written": 5,
            "outbox_depth": 0,
            "dropped_overflow": 0,
            "dropped_rejected": 0,
        },
        "alerts": {"evaluation_errors": 0, "failing": False, "unresolved": 1},
        "tickets": {"up": True, "detail": "sqlite, answering"},
    }
    rows = components(status)
    assert [r["state"] for r in rows] == ["up", "off", "up", "up", "up", "up"]
    assert healthy(rows)
    status["store"]["up"] = False
    status["store"]["last_error"] = "ConnectionError: refused"
    rows = components(status)
    store = next(r for r in rows if r["component"] == "store")
    assert store["state"] == "down" and "refused" in store["detail"]
    assert not healthy(rows)


def test_reload_swaps_the_mqtt_collector_without_losing_qos1_messages(tmp_path: Path) -> None:
    """In-process ``Pipeline.serve`` against the shared Mosquitto: a reload that adds an MQTT
    device reconnects the MQTT collector while a publisher keeps sending QoS 1 messages; every
    one of them is stored (the broker holds them for the persistent session meanwhile)."""
    from facmon.runtime import Pipeline, bind_socket
    from store.embedded import EmbeddedStore
    from tests.collector.mosquitto import SHARED, Publisher, unique

    prefix = unique()

    def text(devices: list[str]) -> str:
        devs = "".join(
            f"  - {{id: {d}, name: {d}, kind: sensor, location: {{building: b1}}, "
            "source: {type: mqtt}}\n"
            for d in devices
        )
        return (
            "site: {id: s1, name: Site}\nbuildings:\n  - {id: b1, name: B1, floor_area_m2: 100, "
            f"floors: 2}}\ndevices:\n{devs}data_dir: {tmp_path / 'data'}\nmqtt:\n"
            f"  host: {SHARED[0]}\n  port: {SHARED[1]}\n  client_id: {client_id}\n"
            "  session_expiry: 60s\n  subscriptions:\n"
            f"    - {{topic: {prefix}/+/leak, template: '{prefix}/{{device}}/leak', "
            "format: json, fields: {leak: v}, timestamp_field: ts, timestamp_unit: ms, qos: 1}\n"
        )

    client_id = unique("facmon")
    site = tmp_path / "site.yaml"
    site.write_text(text(["leak1"]), encoding="utf-8")
    pipeline = Pipeline.build(load_config_text(text(["leak1"]), env={}), config_path=site)
    sock = bind_socket("127.0.0.1", 0)
    sent = list(range(1, 151))

    async def scenario() -> None:
        stop, reload = asyncio.Event(), asyncio.Event()
        serving = asyncio.create_task(pipeline.serve(sock, {TOKEN: "admin"}, stop, reload=reload))

        async def until(what: str, cond: Callable[[], bool], timeout: float = 10) -> None:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while not cond():
                assert loop.time() < deadline, what
                await asyncio.sleep(0.05)

        await until("subscribed", lambda: pipeline.mqtt is not None and pipeline.mqtt.subscribed)
        first = pipeline.mqtt
        pub = Publisher(*SHARED)

        # Each message carries its own time: the store keys samples by time, and messages the
        # broker held during the reconnect arrive within the same millisecond.
        base = int(time.time() * 1000) - 10_000

        def publish_all() -> None:
            for n in sent:
                pub.publish(f"{prefix}/leak1/leak", {"v": n, "ts": base + n})
                time.sleep(0.01)

        publishing = asyncio.create_task(asyncio.to_thread(publish_all))
        await asyncio.sleep(0.5)
        site.write_text(text(["leak1", "leak2"]), encoding="utf-8")
        reload.set()
        await until("reloaded", lambda: pipeline.reloads.count == 1)
        assert pipeline.reloads.last is not None and pipeline.reloads.last.ok
        assert pipeline.mqtt is not first
        await publishing
        await asyncio.to_thread(pub.publish, f"{prefix}/leak2/leak", {"v": 1, "ts": base})
        pub.close()
        await until(
            "all stored",
            lambda: (
                pipeline.mqtt is not None
                and pipeline.mqtt.subscribed
                and pipeline.mqtt.stats.pending == 0
                and pipeline.received >= len(sent) + 1
            ),
        )
        stop.set()
        await serving

    asyncio.run(scenario())
    store = EmbeddedStore(pipeline.config.embedded_path)
    try:
        start = datetime(2000, 1, 1, tzinfo=UTC)
        end = datetime(2100, 1, 1, tzinfo=UTC)
        got = store.series("leak", start, end)
    finally:
        store.close()
    assert {int(v) for _, v in got["leak1"]} == set(sent)
    assert [v for _, v in got["leak2"]] == [1.0]


def test_modbus_collector_stop_lets_the_poll_in_flight_finish() -> None:
    """What a reload relies on: ``stop()`` ends ``run()`` after the poll in flight delivered
    its readings, and at once for a device waiting for its next poll."""
    from collector.modbus import ModbusCollector
    from collector.profile import load_profile
    from store.reading import Reading
    from tests.collector.modbus_server import ModbusTestServer, Unit, make_device

    pm = load_profile("generic_power_meter_3p")

    async def main() -> None:
        slow = Unit.from_profile(pm, {"voltage_a": 230.0, "active_power": 8.0})
        slow.mode, slow.delay_s = "slow", 0.5
        fast = Unit.from_profile(pm, {"voltage_a": 231.0, "active_power": 4.0})
        async with ModbusTestServer({1: slow, 2: fast}) as srv:
            polls: list[list[Reading]] = []
            devices = [
                make_device("slow", srv.port, unit=1, interval=10.0, timeout=2.0),
                make_device("fast", srv.port, unit=2, interval=10.0, timeout=2.0),
            ]
            c = ModbusCollector(devices, lambda rs: polls.append(list(rs)), site_id="s")
            running = asyncio.create_task(c.run())
            await asyncio.sleep(0.2)  # "slow" (offset 0) waits for its answer, "fast" sleeps
            assert polls == []
            c.stop()
            await asyncio.wait_for(running, 5)
        assert [p[0].device for p in polls] == ["slow"]
        up = [r.value for r in polls[0] if r.metric == "device_up"]
        assert up == [1.0] and any(r.metric == "voltage_a" for r in polls[0])

    asyncio.run(main())
