"""`Pipeline.serve` with an `mqtt` block: the MQTT collector runs beside the others, its samples
reach the store, and its figures are on /health. Real shared Mosquitto at 127.0.0.1:1883."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from config.loader import load_config_text
from facmon.runtime import Pipeline, bind_socket
from tests.collector.mosquitto import SHARED, Publisher, unique


def test_serve_starts_the_mqtt_collector_and_reports_it_on_health(tmp_path: Path) -> None:
    prefix = unique()
    text = f"""\
site: {{id: s1, name: Site}}
buildings:
  - {{id: b1, name: B1, floor_area_m2: 100, floors: 2}}
devices:
  - {{id: leak1, name: Leak, kind: sensor, location: {{building: b1}}, source: {{type: mqtt}}}}
data_dir: {tmp_path / 'data'}
mqtt:
  host: {SHARED[0]}
  port: {SHARED[1]}
  client_id: {unique('facmon')}
  session_expiry: 60s
  subscriptions:
    - topic: {prefix}/+/leak
      template: {prefix}/{{device}}/leak
      format: number
      metric: leak
"""
    config = load_config_text(text, env={})
    pipeline = Pipeline.build(config)
    sock = bind_socket("127.0.0.1", 0)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/health"
    since = datetime.now(UTC) - timedelta(seconds=5)

    async def scenario() -> dict[str, object]:
        stop = asyncio.Event()
        serving = asyncio.create_task(pipeline.serve(sock, {"t0ken": "admin"}, stop))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        async with httpx.AsyncClient() as http:
            while True:
                assert loop.time() < deadline, "timed out"
                try:
                    body: dict[str, object] = (await http.get(url)).json()
                except httpx.HTTPError:
                    body = {}
                mqtt = body.get("mqtt")
                subscribed = pipeline.mqtt is not None and pipeline.mqtt.subscribed
                if isinstance(mqtt, dict) and mqtt["connected"] and subscribed:
                    break
                await asyncio.sleep(0.05)
            pub = Publisher(*SHARED)
            await asyncio.to_thread(pub.publish, f"{prefix}/leak1/leak", "1")
            await asyncio.to_thread(pub.publish, f"{prefix}/ghost/leak", "1")
            pub.close()
            while True:
                assert loop.time() < deadline, "timed out"
                body = (await http.get(url)).json()
                mqtt = body["mqtt"]
                assert isinstance(mqtt, dict)
                if mqtt["received"] == 2 and mqtt["pending"] == 0:
                    break
                await asyncio.sleep(0.05)
        stop.set()
        await serving
        return body

    body = asyncio.run(scenario())
    mqtt = body["mqtt"]
    assert isinstance(mqtt, dict)
    assert mqtt["stored"] == 1 and mqtt["unknown_devices"] == {"ghost": 1}
    assert mqtt["bad_total"] == 0

    from store.embedded import EmbeddedStore

    store = EmbeddedStore(config.embedded_path)
    try:
        [latest] = store.latest(devices=["leak1"], metrics=["leak"], since=since)
    finally:
        store.close()
    assert latest.value == 1.0 and latest.tags["building"] == "b1"
