"""Site files and samples for the edge -> broker -> ingest tests (collector and facmon)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb

from config.loader import load_config_text
from config.models import SiteConfig
from store.reading import Quality, Reading

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def edge_text(port: int, prefix: str, client_id: str, data_dir: Path, extra: str = "") -> str:
    return f"""\
site: {{id: s1, name: Edge}}
buildings:
  - {{id: b1, name: B1, floor_area_m2: 100, floors: 2}}
  - {{id: b2, name: B2, floor_area_m2: 100, floors: 2}}
data_dir: {data_dir}
uplink:
  host: 127.0.0.1
  port: {port}
  client_id: {client_id}
  topic_prefix: "{prefix}/{{site}}/{{building}}"
  reconnect_min: 1s
  reconnect_max: 1s
  batch_size: 200
{extra}"""


def central_text(
    port: int, prefix: str, client_id: str, group: str, data_dir: Path, protocol: str = "5"
) -> str:
    return f"""\
site: {{id: central, name: Central}}
buildings:
  - {{id: hq, name: HQ, floor_area_m2: 100, floors: 1}}
data_dir: {data_dir}
storage:
  outbox: {{flush_interval: 100ms}}
ingest:
  host: 127.0.0.1
  port: {port}
  protocol: "{protocol}"
  client_id: {client_id}
  group: {group}
  topic: "{prefix}/+/+/#"
  session_expiry: 120s
  reconnect_min: 1s
  reconnect_max: 1s
"""


def edge(port: int, prefix: str, client_id: str, data_dir: Path, extra: str = "") -> SiteConfig:
    return load_config_text(edge_text(port, prefix, client_id, data_dir, extra), env={})


def central(
    port: int, prefix: str, client_id: str, group: str, data_dir: Path, protocol: str = "5"
) -> SiteConfig:
    text = central_text(port, prefix, client_id, group, data_dir, protocol)
    return load_config_text(text, env={})


_TAGS = {
    b: {"site": "s1", "building": b, "kind": "sensor", "floor": "3F", "zone": "井道"}
    for b in ("b1", "b2")
}


def samples(start: int, n: int) -> list[Reading]:
    """``n`` distinct samples numbered from ``start``: both buildings, several devices and
    metrics, every quality, values that identify the sample."""
    out = []
    for i in range(start, start + n):
        building = "b1" if i % 3 else "b2"
        out.append(
            Reading(
                T0 + timedelta(seconds=i // 12),
                f"dev-{building}-{i % 4}",
                ("temperature", "humidity", "leak")[i % 3],
                i * 0.25 - 7.5,
                ("°C", "%", "")[i % 3],
                Quality(i % 3),
                _TAGS[building],
            )
        )
    return out


def stored_rows(paths: Sequence[Path]) -> list[tuple[str, str, int, float, str, int, str]]:
    """Every row of the embedded stores at ``paths`` (closed by their writers)."""
    rows: list[tuple[str, str, int, float, str, int, str]] = []
    for path in paths:
        if not path.exists():
            continue
        con = duckdb.connect(str(path), read_only=True)
        try:
            rows.extend(
                con.execute(
                    "SELECT device, metric, time, value, unit, quality, tags FROM readings"
                ).fetchall()
            )
        finally:
            con.close()
    return rows


def expected_rows(
    readings: Sequence[Reading],
) -> dict[tuple[str, str, int], tuple[float, str, int]]:
    return {(r.device, r.metric, r.time_us): (r.value, r.unit, int(r.quality)) for r in readings}
