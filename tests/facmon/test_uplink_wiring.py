"""`Pipeline.serve` with an `uplink` block: what the pipeline ingests reaches a central ingest
worker through the broker, and the uplink's figures are on /health. Real shared Mosquitto at
127.0.0.1:1883, a real ingest worker with its outbox and embedded store."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from facmon.runtime import Pipeline, bind_socket
from tests.collector.mosquitto import SHARED, unique, wait_for
from tests.collector.test_uplink import Central
from tests.collector.uplink_sites import central, edge, expected_rows, samples, stored_rows


def test_serve_publishes_what_it_ingests_and_reports_the_uplink(tmp_path: Path) -> None:
    prefix = unique("up")
    cen = Central(central(SHARED[1], prefix, unique("ing"), unique("g"), tmp_path / "central"))
    try:
        pipeline = Pipeline.build(edge(SHARED[1], prefix, unique("edge"), tmp_path / "edge"))
        sock = bind_socket("127.0.0.1", 0)
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/health"
        readings = samples(0, 2000)

        async def scenario() -> dict[str, object]:
            stop = asyncio.Event()
            serving = asyncio.create_task(pipeline.serve(sock, {"t0ken": "admin"}, stop))
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 20
            for i in range(0, len(readings), 500):
                await asyncio.to_thread(pipeline.ingest, readings[i : i + 500])
            async with httpx.AsyncClient() as http:
                while True:
                    assert loop.time() < deadline, "timed out"
                    try:
                        body: dict[str, object] = (await http.get(url)).json()
                    except httpx.HTTPError:
                        body = {}
                    up = body.get("uplink")
                    if isinstance(up, dict) and up["published"] == len(readings):
                        break
                    await asyncio.sleep(0.05)
            stop.set()
            await serving
            return body

        body = asyncio.run(scenario())
        up = body["uplink"]
        assert isinstance(up, dict)
        assert up["buffered"] == 0 and up["dropped"] == 0 and up["connected"] is True
        store = body["store"]
        assert isinstance(store, dict) and store["received"] == len(readings)
        wait_for(lambda: cen.stored() >= len(readings), 10, "central stored all")
    finally:
        path = cen.close()
    rows = stored_rows([path])
    assert {(d, m, t) for d, m, t, *_ in rows} == set(expected_rows(readings))
