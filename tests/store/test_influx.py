"""InfluxStore against a real influxd 1.6 (through the write shim, see tests/fixtures/influxd.py).

The 2.x setup path (bucket + DBRP mapping) cannot run against a real InfluxDB 2 here (only 1.6 is
installed), so it is tested against a small local HTTP server that checks each request the way
InfluxDB 2's API documents it; that is the one fake in this file.
"""

from __future__ import annotations

import gzip
import json
import socket
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
from pydantic import SecretStr

from config.models import InfluxStorage
from store.base import (
    RejectedPointsError,
    RetryableStoreError,
    StoreError,
    Windows,
    WindowValue,
)
from store.columnar import ReadingBatch
from store.influx import InfluxStore, init_influx, is_loopback
from store.reading import Quality, Reading
from tests.fixtures.influxd import InfluxServer, WriteShim, free_port

T0 = datetime(2024, 3, 1, 16, 0, tzinfo=UTC)  # midnight in Asia/Shanghai
MIN = timedelta(minutes=1)
QUOTED = "pm'1\"x"  # device ids reach InfluxQL as literals: quotes must not break out
StoreFactory = Callable[[], InfluxStore]


def minutes(n: int) -> datetime:
    return T0 + n * MIN


def db_of(store: InfluxStore) -> str:
    return store.settings.bucket


@pytest.fixture
def store(influx_store_factory: StoreFactory) -> InfluxStore:
    return influx_store_factory()


def power(device: str, n: int, value: float, q: Quality = Quality.GOOD) -> Reading:
    return Reading(
        minutes(n),
        device,
        "active power",
        value,
        "kW",
        q,
        tags={"building": "一号楼", "floor": "B1, 配电室"},
    )


# -- writes and reads -----------------------------------------------------------------------
def test_round_trip_latest_keeps_unit_tags_and_quality(store: InfluxStore) -> None:
    store.write([power(QUOTED, n, float(n)) for n in range(5)])
    store.write([power(QUOTED, 5, 99.0, Quality.BAD), Reading(minutes(2), "wm-1", "水量", 7.5)])

    got = store.latest()

    assert got == [
        Reading(
            minutes(5),
            QUOTED,
            "active power",
            99.0,
            "kW",
            Quality.BAD,
            tags={"building": "一号楼", "floor": "B1, 配电室"},
        ),
        Reading(minutes(2), "wm-1", "水量", 7.5),
    ]
    assert store.stats.written == 7 and store.stats.write_calls == 2


def test_latest_filters_by_device_metric_and_since(store: InfluxStore) -> None:
    store.write([power("a", 1, 1.0), power("b", 3, 3.0), Reading(minutes(4), "a", "pf", 0.9)])

    assert [(r.device, r.metric) for r in store.latest(devices=["a"])] == [
        ("a", "active power"),
        ("a", "pf"),
    ]
    assert [r.device for r in store.latest(metrics=["active power"])] == ["a", "b"]
    assert [r.device for r in store.latest(since=minutes(2))] == ["a", "b"]
    assert [r.metric for r in store.latest(devices=["a"], since=minutes(2))] == ["pf"]
    assert store.latest(devices=[]) == [] and store.latest(metrics=["nothing"]) == []


def test_replayed_batch_is_stored_once(store: InfluxStore, influxd: InfluxServer) -> None:
    batch = [power(QUOTED, n, float(n)) for n in range(10)]
    store.write(batch)
    store.write(batch)
    store.write(batch[3:7])

    assert influxd.count(db_of(store), "active power") == {QUOTED: 10}


def test_series_and_last_before_skip_bad_points(store: InfluxStore) -> None:
    store.write(
        [power(QUOTED, n, float(n), Quality.BAD if n == 4 else Quality.GOOD) for n in range(8)]
    )
    store.write([power("other", 1, 100.0, Quality.UNCERTAIN)])

    s = store.series("active power", minutes(2), minutes(6), devices=[QUOTED])
    assert s == {QUOTED: [(minutes(2), 2.0), (minutes(3), 3.0), (minutes(5), 5.0)]}
    assert store.series("active power", minutes(0), minutes(2)) == {
        QUOTED: [(minutes(0), 0.0), (minutes(1), 1.0)],
        "other": [(minutes(1), 100.0)],
    }
    assert store.last_before("active power", minutes(5)) == {
        QUOTED: (minutes(3), 3.0),
        "other": (minutes(1), 100.0),
    }
    assert store.last_before("active power", minutes(0)) == {}
    assert store.series("no such metric", minutes(0), minutes(9)) == {}


def test_long_device_lists_are_queried_too(store: InfluxStore) -> None:
    devices = [f"楼宇-{i:03d}-电表 'x'" for i in range(300)]  # the query is ~5 kB
    store.write([power(d, 0, float(i)) for i, d in enumerate(devices)])
    wanted = devices[::3]
    got = store.series("active power", minutes(0), minutes(1), devices=wanted)
    assert got == {d: [(minutes(0), float(devices.index(d)))] for d in wanted}


def test_aggregate_windows_align_to_start_clip_at_end_and_omit_empty(store: InfluxStore) -> None:
    # 20 one-minute samples; windows of 7 min starting at minute 3, ending at minute 19
    # (so the last window is [17, 19)). Minute 12 is BAD; minutes 10..11 missing.
    store.write(
        [
            power("pm-1", n, float(n), Quality.BAD if n == 12 else Quality.GOOD)
            for n in range(20)
            if n not in (10, 11)
        ]
    )
    store.write([power("pm-2", 4, 40.0)])
    w = Windows(minutes(3), minutes(19), timedelta(minutes=7))

    def agg(fn: Any) -> list[tuple[str, int, float]]:
        return [
            (v.device, int((v.start - T0) / MIN), v.value)
            for v in store.aggregate("active power", w, fn)
        ]

    assert agg("mean") == [
        ("pm-1", 3, (3 + 4 + 5 + 6 + 7 + 8 + 9) / 7),
        ("pm-1", 10, (13 + 14 + 15 + 16) / 4),
        ("pm-1", 17, 17.5),
        ("pm-2", 3, 40.0),
    ]
    assert agg("min") == [
        ("pm-1", 3, 3.0),
        ("pm-1", 10, 13.0),
        ("pm-1", 17, 17.0),
        ("pm-2", 3, 40.0),
    ]
    assert agg("max") == [
        ("pm-1", 3, 9.0),
        ("pm-1", 10, 16.0),
        ("pm-1", 17, 18.0),
        ("pm-2", 3, 40.0),
    ]
    assert agg("last") == [
        ("pm-1", 3, 9.0),
        ("pm-1", 10, 16.0),
        ("pm-1", 17, 18.0),
        ("pm-2", 3, 40.0),
    ]
    assert store.aggregate("active power", w, "max", devices=["pm-2"]) == [
        WindowValue("pm-2", minutes(3), 40.0)
    ]


def test_batches_from_the_outbox_round_trip_gzipped_through_the_shim(
    influx_store_factory: StoreFactory, influxd: InfluxServer
) -> None:
    plain = influx_store_factory()
    settings = plain.settings
    with closing(InfluxStore(settings, compress=True)) as gz:
        gz.write(ReadingBatch.from_readings([power(QUOTED, n, n + 0.5) for n in range(50)]))
        assert influxd.count(settings.bucket, "active power") == {QUOTED: 50}
        assert gz.latest() == [power(QUOTED, 49, 49.5)]


def test_compressed_body_is_gzip_line_protocol() -> None:
    seen: list[tuple[str | None, bytes]] = []

    def capture(h: Handler) -> None:
        seen.append((h.headers.get("Content-Encoding"), h.body))
        h.answer(204, b"")

    with ScriptedServer(capture) as url:
        for compress in (True, False):
            with closing(InfluxStore(InfluxStorage(url=url), compress=compress)) as s:
                s.write([power("pm-1", 0, 1.5)])
    (enc1, body1), (enc2, body2) = seen
    line = (
        r"active\ power,building=一号楼,device=pm-1,floor=B1\,\ 配电室,unit=kW"
        f" value=1.5,quality=0i {T0_US}"
    )
    assert enc1 == "gzip" and gzip.decompress(body1).decode() == line
    assert enc2 is None and body2.decode() == line


@pytest.mark.parametrize("pretty", [False, True])
def test_chunked_and_pretty_printed_answers_are_merged(pretty: bool) -> None:
    """influxd sends one chunk a line (the fast path); an answer spread over lines (a proxy
    that pretty-prints) is still read. A scripted server: influxd cannot pretty-print chunks."""

    def chunk(values: list[list[Any]]) -> dict[str, Any]:
        series = {"name": "e", "tags": {"device": "pm-1"}, "columns": ["time", "value"]}
        return {"results": [{"statement_id": 0, "series": [{**series, "values": values}]}]}

    chunks = [chunk([[1, 1.5], [2, 2]]), chunk([[3, None]])]
    body = "".join(json.dumps(c, indent=2 if pretty else None) + "\n" for c in chunks).encode()

    with (
        ScriptedServer(lambda h: h.answer(200, body)) as url,
        closing(InfluxStore(InfluxStorage(url=url))) as s,
    ):
        got = s.query("SELECT * FROM e")
        arrays = s.series_arrays("e", T0, T0 + timedelta(hours=1))
    assert [g["values"] for g in got] == [[[1, 1.5], [2, 2], [3, None]]]
    t, v = arrays["pm-1"]
    assert (list(arrays), t.tolist(), v.tolist()) == (["pm-1"], [1, 2], [1.5, 2.0])


@pytest.mark.parametrize(
    ("url", "local"),
    [
        ("http://127.0.0.1:8086", True),
        ("http://localhost:8086", True),
        ("http://[::1]:8086", True),
        ("https://influx.example.com", False),
        ("http://10.0.0.5:8086", False),
    ],
)
def test_loopback_detection(url: str, local: bool) -> None:
    assert is_loopback(url) is local


def test_daily_windows_in_shanghai_time(store: InfluxStore) -> None:
    # Days in Asia/Shanghai start at 16:00 UTC: the offset must carry the windows there.
    store.write([power("pm-1", n * 60, float(n)) for n in range(48)])
    days = store.aggregate(
        "active power", Windows(T0, T0 + timedelta(days=2), timedelta(days=1)), "max"
    )
    assert days == [
        WindowValue("pm-1", T0, 23.0),
        WindowValue("pm-1", T0 + timedelta(days=1), 47.0),
    ]


def test_counter_delta_works_on_influx(store: InfluxStore) -> None:
    kwh = [Reading(minutes(n), "pm-1", "energy", 100.0 + n) for n in range(-5, 30)]
    store.write(kwh)
    hours = store.counter_delta("energy", Windows(T0, minutes(20), timedelta(minutes=10)))
    assert [(c.device, round(c.delta, 6)) for c in hours] == [("pm-1", 10.0), ("pm-1", 10.0)]


# -- errors ---------------------------------------------------------------------------------
def test_field_type_conflict_is_rejected_with_influx_message(
    store: InfluxStore, influxd: InfluxServer
) -> None:
    r = influxd.write_lines(db_of(store), f"active\\ power,device=x value=1i {T0_US}")
    assert r.status_code == 204
    with pytest.raises(RejectedPointsError, match="field type conflict"):
        store.write([power("pm-1", 0, 1.0)])


def test_unencodable_value_is_rejected_before_sending(store: InfluxStore) -> None:
    with pytest.raises(RejectedPointsError, match=r"pm-1/active power .* not finite"):
        store.write([power("pm-1", 0, 1.0), power("pm-1", 1, float("nan"))])
    assert store.stats.write_calls == 0


def test_stopped_influxd_is_retryable_then_recovers(
    store: InfluxStore, influxd: InfluxServer
) -> None:
    influxd.stop()
    try:
        with pytest.raises(RetryableStoreError, match="503"):
            store.write([power("pm-1", 0, 1.0)])
        with pytest.raises(RetryableStoreError):
            store.latest()
    finally:
        influxd.start()
    store.write([power("pm-1", 0, 1.0)])
    assert [r.value for r in store.latest()] == [1.0]


def test_unreachable_and_silent_servers_are_retryable() -> None:
    closed = InfluxStorage(url=f"http://127.0.0.1:{free_port()}", timeout=timedelta(seconds=2))
    with closing(InfluxStore(closed)) as s:
        with pytest.raises(RetryableStoreError):
            s.write([power("pm-1", 0, 1.0)])
        with pytest.raises(RetryableStoreError):
            s.series("active power", T0, minutes(1))
    with pytest.raises(RetryableStoreError, match="unreachable"):
        init_influx(closed)

    with socket.socket() as listener:  # accepts connections, never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        silent = InfluxStorage(
            url=f"http://127.0.0.1:{listener.getsockname()[1]}",
            timeout=timedelta(milliseconds=300),
        )
        with closing(InfluxStore(silent)) as s:
            with pytest.raises(RetryableStoreError, match=r"(?i)timed? ?out"):
                s.write([power("pm-1", 0, 1.0)])
            with pytest.raises(RetryableStoreError):
                s.latest()


def test_influxql_errors_are_store_errors(influxd: InfluxServer) -> None:
    settings = InfluxStorage(url=influxd.shim_url, bucket="never_created")
    with closing(InfluxStore(settings)) as s:
        with pytest.raises(StoreError, match="database not found") as e:
            s.latest()
        assert not e.value.retryable


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, RejectedPointsError),
        (413, RejectedPointsError),
        (422, RejectedPointsError),
        (401, RetryableStoreError),
        (403, RetryableStoreError),
        (404, RetryableStoreError),
        (429, RetryableStoreError),
        (500, RetryableStoreError),
        (503, RetryableStoreError),
    ],
)
def test_http_status_mapping(status: int, kind: type[Exception]) -> None:
    body = json.dumps({"code": "x", "message": f"server says {status}"}).encode()
    with (
        ScriptedServer(lambda h: h.answer(status, body)) as url,
        closing(InfluxStore(InfluxStorage(url=url))) as s,
        pytest.raises(kind, match=f"HTTP {status}.*server says {status}"),
    ):
        s.write([power("pm-1", 0, 1.0)])


def test_shim_maps_v2_write_precisions_onto_1x(influxd: InfluxServer) -> None:
    init_influx(InfluxStorage(url=influxd.url, bucket="shim_check"))
    s = T0_US // 1_000_000
    for precision, stamp in (
        ("s", s),
        ("ms", s * 1000 + 1),
        ("us", T0_US + 2),
        ("ns", (T0_US + 3) * 1000),
    ):
        r = httpx.post(
            f"{influxd.shim_url}/api/v2/write",
            params={"bucket": "shim_check", "precision": precision},
            content=f"m,device={precision} value=1 {stamp}".encode(),
        )
        assert r.status_code == 204, r.text
    got = influxd.query('SELECT "value" FROM "m" GROUP BY "device"', db="shim_check")
    times = {x["tags"]["device"]: x["values"][0][0] for x in got["results"][0]["series"]}
    assert times == {"s": T0_US, "ms": T0_US + 1000, "us": T0_US + 2, "ns": T0_US + 3}


# -- auth (a second, real influxd with auth enabled) -----------------------------------------
def test_user_password_auth_on_1x(tmp_path: Path) -> None:
    server = InfluxServer(tmp_path, auth_enabled=True)
    server.start()
    shim = WriteShim(server.http_port)
    shim.start()
    try:
        # With auth on and no user yet, 1.x lets the first admin be created anonymously.
        server.query("CREATE USER admin WITH PASSWORD 's3cret' WITH ALL PRIVILEGES", method="POST")
        good = InfluxStorage(
            url=shim.url, bucket="secured", username="admin", password=SecretStr("s3cret")
        )
        assert "created" in init_influx(good)
        with closing(InfluxStore(good)) as s:
            s.write([power("pm-1", 0, 1.0)])
            assert [r.value for r in s.latest()] == [1.0]
        bad = good.model_copy(update={"password": SecretStr("wrong")})
        with closing(InfluxStore(bad)) as s:
            with pytest.raises(RetryableStoreError, match="401") as e:
                s.write([power("pm-1", 1, 2.0)])
            assert "wrong" not in str(e.value) and "s3cret" not in str(e.value)
            with pytest.raises(RetryableStoreError, match="401"):
                s.latest()
    finally:
        shim.stop()
        server.stop()


# -- init -----------------------------------------------------------------------------------
def test_init_on_1x_is_idempotent(influxd: InfluxServer) -> None:
    settings = InfluxStorage(url=influxd.shim_url, bucket="init-me 库")
    first, second = init_influx(settings), init_influx(settings)
    assert first.startswith("InfluxDB 1.6") and "'init-me 库' created" in first
    assert "'init-me 库' already exists" in second
    names = [row[0] for row in influxd.query("SHOW DATABASES")["results"][0]["series"][0]["values"]]
    assert names.count("init-me 库") == 1


class FakeInflux2:
    """The part of InfluxDB 2's HTTP API that init uses, checked as its API reference says:

    every call needs ``Authorization: Token``; ``GET /api/v2/buckets`` filters by ``name`` and
    ``org``; ``POST /api/v2/buckets`` needs ``orgID`` and ``name``; ``GET /api/v2/orgs?org=``;
    ``GET /api/v2/dbrps`` needs ``orgID`` or ``org``; ``POST /api/v2/dbrps`` needs ``bucketID``,
    ``database``, ``retention_policy`` and ``orgID`` or ``org``.
    """

    TOKEN = "tok-123"
    ORG: ClassVar[dict[str, str]] = {"id": "0a1b2c3d4e5f6071", "name": "acme"}

    def __init__(self) -> None:
        self.buckets: list[dict[str, Any]] = []
        self.dbrps: list[dict[str, Any]] = []
        self.calls: list[str] = []
        self.problems: list[str] = []

    def handle(self, h: Handler) -> None:
        url = urllib.parse.urlsplit(h.path)
        q = {k: v[0] for k, v in urllib.parse.parse_qs(url.query).items()}
        self.calls.append(f"{h.command} {url.path}")
        if url.path == "/ping":
            h.answer(204, b"", {"X-Influxdb-Version": "v2.7.11", "X-Influxdb-Build": "OSS"})
            return
        if h.headers.get("Authorization") != f"Token {self.TOKEN}":
            h.answer(401, b'{"code":"unauthorized","message":"unauthorized access"}')
            return
        body = json.loads(h.body) if h.body else {}
        route = (h.command, url.path)
        if route == ("GET", "/api/v2/orgs"):
            orgs = [self.ORG] if q.get("org") in (None, self.ORG["name"]) else []
            h.json(200, {"orgs": orgs})
        elif route == ("GET", "/api/v2/buckets"):
            if q.get("org") not in (None, self.ORG["name"]):
                h.json(404, {"code": "not found", "message": "organization not found"})
                return
            found = [b for b in self.buckets if q.get("name") in (None, b["name"])]
            h.json(200, {"buckets": found})
        elif route == ("POST", "/api/v2/buckets"):
            if body.get("orgID") != self.ORG["id"] or not body.get("name"):
                self.problems.append(f"bad bucket request {body}")
                h.json(400, {"code": "invalid", "message": "orgID and name are required"})
                return
            bucket = {
                "id": f"b{len(self.buckets):015d}",
                "orgID": body["orgID"],
                "name": body["name"],
                "type": "user",
                "retentionRules": body.get("retentionRules", []),
            }
            self.buckets.append(bucket)
            h.json(201, bucket)
        elif route == ("GET", "/api/v2/dbrps"):
            if not (q.get("orgID") or q.get("org")):
                h.json(400, {"code": "invalid", "message": "either org or orgID must be provided"})
                return
            found = [
                d
                for d in self.dbrps
                if all(
                    q.get(k) in (None, d[f])
                    for k, f in (("orgID", "orgID"), ("bucketID", "bucketID"), ("db", "database"))
                )
            ]
            h.json(200, {"content": found})
        elif route == ("POST", "/api/v2/dbrps"):
            need = ("bucketID", "database", "retention_policy")
            if any(not body.get(k) for k in need) or not (body.get("orgID") or body.get("org")):
                self.problems.append(f"bad dbrp request {body}")
                h.json(400, {"code": "invalid", "message": "missing field"})
                return
            dbrp = {
                "id": f"d{len(self.dbrps):015d}",
                "orgID": body.get("orgID"),
                "bucketID": body["bucketID"],
                "database": body["database"],
                "retention_policy": body["retention_policy"],
                "default": bool(body.get("default")),
                "virtual": False,
            }
            self.dbrps.append(dbrp)
            h.json(201, dbrp)
        else:
            self.problems.append(f"unexpected {h.command} {h.path}")
            h.json(404, {"code": "not found", "message": "path not found"})


def test_init_on_2x_creates_bucket_and_dbrp_once() -> None:
    fake = FakeInflux2()
    with ScriptedServer(fake.handle) as url:
        settings = InfluxStorage(url=url, bucket="facmon", org="acme", token=SecretStr(fake.TOKEN))
        first = init_influx(settings)
        second = init_influx(settings)
        unauthorised = settings.model_copy(update={"token": SecretStr("nope")})
        with pytest.raises(RetryableStoreError, match="401"):
            init_influx(unauthorised)
        no_org = settings.model_copy(update={"org": ""})
        with pytest.raises(StoreError, match="org"):
            init_influx(no_org)

    assert fake.problems == []
    assert first == (
        "InfluxDB v2.7.11 at " + url + ": bucket 'facmon' created; "
        "InfluxQL mapping facmon/autogen created"
    )
    assert second.endswith(
        ": bucket 'facmon' already exists; InfluxQL mapping facmon/autogen already exists"
    )
    assert [b["name"] for b in fake.buckets] == ["facmon"]
    assert fake.dbrps == [
        {
            "id": fake.dbrps[0]["id"],
            "orgID": FakeInflux2.ORG["id"],
            "bucketID": fake.buckets[0]["id"],
            "database": "facmon",
            "retention_policy": "autogen",
            "default": True,
            "virtual": False,
        }
    ]


def test_init_on_2x_adds_missing_mapping_to_existing_bucket() -> None:
    fake = FakeInflux2()
    fake.buckets.append(
        {
            "id": "b000000000000042",
            "orgID": FakeInflux2.ORG["id"],
            "name": "facmon",
            "type": "user",
            "retentionRules": [],
        }
    )
    with ScriptedServer(fake.handle) as url:
        settings = InfluxStorage(url=url, org="acme", token=SecretStr(fake.TOKEN))
        message = init_influx(settings)
    assert fake.problems == []
    assert message.endswith(
        ": bucket 'facmon' already exists; InfluxQL mapping facmon/autogen created"
    )
    assert "POST /api/v2/buckets" not in fake.calls
    assert [d["bucketID"] for d in fake.dbrps] == ["b000000000000042"]


def test_init_on_3x_has_nothing_to_do() -> None:
    def handle(h: Handler) -> None:
        h.answer(200, b"{}", {"X-Influxdb-Version": "3.0.1"})

    with ScriptedServer(handle) as url:
        assert "created on first write" in init_influx(InfluxStorage(url=url))


def test_init_refuses_a_server_that_is_not_influx() -> None:
    with (
        ScriptedServer(lambda h: h.answer(200, b"hello")) as url,
        pytest.raises(StoreError, match="X-Influxdb-Version"),
    ):
        init_influx(InfluxStorage(url=url))


# -- helpers --------------------------------------------------------------------------------
T0_US = int((T0 - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(microseconds=1))


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Scripted
    body: bytes

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _any(self) -> None:
        n = int(self.headers.get("Content-Length") or 0)
        self.body = self.rfile.read(n) if n else b""
        self.server.script(self)

    do_GET = do_POST = do_HEAD = _any

    def answer(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def json(self, status: int, doc: Any) -> None:
        self.answer(status, json.dumps(doc).encode())


class _Scripted(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, script: Callable[[Handler], None]) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.script = script


class ScriptedServer:
    """A loopback HTTP server whose every request goes to ``script``."""

    def __init__(self, script: Callable[[Handler], None]) -> None:
        self.server = _Scripted(script)
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def __enter__(self) -> str:
        self.thread.start()
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # httpx and urllib3 honour *_PROXY variables; loopback servers must be reached directly.
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(var, raising=False)
    yield
