"""facmon's own figures as readings (facmon.selfmetrics): sampled by a running pipeline,
stored through the outbox, and ignored by everything that reads devices."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from config import ConfigError, SiteConfig, load_config_text
from facmon.checks import CHECKS
from facmon.selfmetrics import METRICS, Sampler
from store.outbox import WriterStats
from store.reading import Reading

TOKEN = "selfmetrics-test-token-8c1d"
T0 = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _site(data_dir: Path, extra: str = "") -> str:
    return (
        "site: {id: sm, name: Self Metrics}\n"
        "buildings:\n  - {id: b1, name: B1, floor_area_m2: 100, floors: 2}\n"
        "devices:\n"
        "  - id: m1\n    name: Meter 1\n    kind: power_meter\n    location: {building: b1}\n"
        "    poll_interval: 200ms\n"
        "    source: {type: modbus_tcp, host: 127.0.0.1, "
        f"port: {_dead_port()}, unit_id: 1, profile: generic_power_meter_3p, timeout: 100ms, "
        "retries: 0}\n"
        # A rule on a self metric, selecting every device: the engine must never see them.
        "rules:\n  - {id: deep, name: Deep outbox, metric: outbox_depth, above: -1, "
        "severity: minor, fault_class: test}\n"
        f"data_dir: {data_dir}\n" + extra
    )


def _fast(config: SiteConfig, seconds: float) -> SiteConfig:
    """The config with a sampling interval below the 5 s the model allows: tests do not wait."""
    sm = config.storage.self_metrics.model_copy(update={"interval": timedelta(seconds=seconds)})
    storage = config.storage.model_copy(update={"self_metrics": sm})
    return config.model_copy(update={"storage": storage})


def _stats(written: int, batches: int, seconds: float) -> WriterStats:
    return WriterStats(written, 0, 0, 0, 0, None, True, batches, seconds, None)


def test_a_running_pipeline_stores_its_figures_and_nothing_reads_them_as_a_device(
    tmp_path: Path,
) -> None:
    from facmon.runtime import Pipeline, bind_socket
    from store.embedded import EmbeddedStore

    config = _fast(load_config_text(_site(tmp_path / "data"), env={}, checks=CHECKS), 0.2)
    pipeline = Pipeline.build(config)
    sock = bind_socket("127.0.0.1", 0)
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    seen: dict[str, object] = {}
    # The store's figure at each of the sampler's ticks, apart from the device's samples (a
    # failing device writes its health series too): the first ticks come before anything was
    # written, when samples_written is rightly 0.
    recorded: list[int] = []
    record = pipeline.record

    def counting_record(readings: Sequence[Reading]) -> None:
        recorded.append(pipeline.writer.stats.written)
        record(readings)

    pipeline.record = counting_record  # type: ignore[method-assign]

    async def scenario() -> None:
        stop = asyncio.Event()
        serving = asyncio.create_task(pipeline.serve(sock, {TOKEN: "admin"}, stop))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while len(recorded) < 3 or not recorded[-1]:
            assert loop.time() < deadline, "no self-metric samples written"
            await asyncio.sleep(0.1)
        async with httpx.AsyncClient(
            base_url=base, headers={"Authorization": f"Bearer {TOKEN}"}
        ) as client:
            seen["devices"] = (await client.get("/api/v1/devices")).json()
            seen["latest"] = (await client.get("/api/v1/readings/latest")).json()
            seen["facmon"] = (
                await client.get("/api/v1/readings/latest", params={"device": "facmon"})
            ).status_code
        stop.set()
        await serving

    asyncio.run(scenario())
    # Counted like any sample: what was put into the outbox was written (the SIGTERM check).
    assert pipeline.writer.stats.written == pipeline.received
    assert [d["id"] for d in seen["devices"]["items"]] == ["m1"]  # type: ignore[index]
    assert {r["device"] for r in seen["latest"]["items"]} <= {"m1"}  # type: ignore[index]
    assert seen["facmon"] == 400
    tickets = pipeline.tickets.__class__(config.tickets_url)
    try:
        # m1 is down (communication loss fires); nothing is about the pseudo-device.
        alerts = tickets.list_alerts(limit=100).items
        assert alerts and {a.device for a in alerts} == {"m1"}
        assert not tickets.list_alerts(rule_id="deep").items
    finally:
        tickets.close()

    store = EmbeddedStore(config.embedded_path)
    try:
        own = {r.metric: r for r in store.latest(devices=["facmon"])}
        everything = {r.device for r in store.latest()}
    finally:
        store.close()
    assert everything == {"m1", "facmon"}
    assert own["devices_down"].value == 1 and own["devices_up"].value == 0
    assert own["poll_success_ratio"].value == 0
    assert own["store_up"].value == 1
    assert own["samples_written"].value > 0
    assert own["outbox_depth"].unit == "" and own["store_write_latency_ms"].unit == "ms"
    assert dict(own["outbox_depth"].tags) == {"site": "sm", "role": "process"}
    assert set(own) <= set(METRICS)
    assert "paging_outbox_depth" in own  # the pager runs in every pipeline


def test_the_sampler_reports_the_write_latency_of_each_interval() -> None:
    s = Sampler("sm")
    status = {
        "store": {"up": False, "outbox_depth": 120},
        "collector": {"devices": 4, "devices_up": 3, "devices_down": 1},
        "alerts": {"unresolved": None},  # the ticket database did not answer
    }
    first = {r.metric: r.value for r in s.sample(status, _stats(100, 4, 0.08), T0)}
    assert first == {
        "store_up": 0.0,
        "outbox_depth": 120.0,
        "store_write_latency_ms": pytest.approx(20.0),
        "samples_written": 100.0,
        "samples_dropped": 0.0,
        "devices_up": 3.0,
        "devices_down": 1.0,
        "poll_success_ratio": 0.75,
    }
    later = T0 + timedelta(seconds=30)
    second = {r.metric: r.value for r in s.sample(status, _stats(200, 6, 0.10), later)}
    assert second["store_write_latency_ms"] == pytest.approx(10.0)  # 2 writes, 20 ms in all
    third = {r.metric: r.value for r in s.sample(status, _stats(200, 6, 0.10), later)}
    assert "store_write_latency_ms" not in third  # nothing written: no latency, not zero


def test_a_device_may_not_take_the_self_metrics_id(tmp_path: Path) -> None:
    text = _site(tmp_path).replace("id: m1", "id: facmon")
    with pytest.raises(ConfigError) as e:
        load_config_text(text, filename="site.yaml", env={}, checks=CHECKS)
    assert "site.yaml:5 devices[0].id: device id 'facmon' is taken" in str(e.value)
    moved = text + "storage: {self_metrics: {device: facmon-self}}\n"
    config = load_config_text(moved, filename="site.yaml", env={}, checks=CHECKS)
    assert config.storage.self_metrics.device == "facmon-self"
    with pytest.raises(ConfigError) as e:
        load_config_text(text.replace("facmon", "m1") + "storage: {self_metrics: {interval: 1s}}")
    assert "storage.self_metrics.interval" in str(e.value)


def test_a_failing_write_is_logged_once_and_disabled_means_no_task(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from facmon import selfmetrics
    from facmon.runtime import Pipeline

    config = _fast(load_config_text(_site(tmp_path / "data"), env={}, checks=CHECKS), 0.05)
    pipeline = Pipeline.build(config)
    pipeline.writer.outbox.close()  # every put now fails, as on a broken disk

    async def for_a_while(source: Pipeline) -> None:
        task = asyncio.create_task(selfmetrics.run(source))
        await asyncio.sleep(0.6)
        assert not task.done()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    try:
        with caplog.at_level("ERROR", logger="facmon.selfmetrics"):
            asyncio.run(for_a_while(pipeline))
        failures = [r for r in caplog.records if r.name == "facmon.selfmetrics"]
        assert len(failures) == 1 and "retried every interval" in failures[0].getMessage()
        assert pipeline.received == 0

        off = config.storage.self_metrics.model_copy(update={"enabled": False})
        pipeline.config = config.model_copy(
            update={"storage": config.storage.model_copy(update={"self_metrics": off})}
        )
        asyncio.run(asyncio.wait_for(selfmetrics.run(pipeline), 1))  # returns at once
    finally:
        pipeline.store.close()
        pipeline.tickets.close()
