"""Authentication and the one error shape, as an API client sees them."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from alerts import TicketStore
from api import create_app
from store.base import RetryableStoreError
from store.embedded import EmbeddedStore
from store.reading import Reading
from tests.api.conftest import NOW, TOKEN, Api, site_config


def assert_error(resp: Any, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert set(body) == {"error"}
    err = body["error"]
    assert set(err) == {"status", "code", "message", "details"}
    assert err["status"] == status and err["code"] == code
    assert isinstance(err["message"], str) and err["message"]
    assert isinstance(err["details"], list)
    return dict(err)


def test_health_needs_no_token_and_carries_the_status(api: Api) -> None:
    resp = api.client.get("/health")
    assert resp.status_code == 200
    assert resp.json() == {"status": "ok", "store": {"up": True, "outbox_depth": 0}}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": "Bearer"},
    ],
)
def test_missing_or_wrong_token_is_401(
    api: Api, headers: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for path in ("/api/v1/devices", "/api/v1/tickets", "/api/v1/readings/latest"):
        resp = api.client.get(path, headers=headers)
        assert_error(resp, 401, "unauthorized")
        assert resp.headers["www-authenticate"] == "Bearer"
    assert TOKEN not in caplog.text and "wrong-token" not in caplog.text


def test_the_right_token_is_let_in(api: Api) -> None:
    assert api.get("/api/v1/devices").status_code == 200


def test_tokens_default_to_the_config(tmp_path: Path) -> None:
    cfg = site_config(api={"tokens": [{"name": "ops", "token": "from-config", "role": "admin"}]})
    store, tickets = EmbeddedStore(":memory:"), TicketStore(f"sqlite:///{tmp_path / 't.db'}")
    try:
        with TestClient(create_app(cfg, store, tickets)) as client:
            ok = client.get("/api/v1/devices", headers={"Authorization": "Bearer from-config"})
            assert ok.status_code == 200
            assert_error(client.get("/api/v1/devices"), 401, "unauthorized")
    finally:
        tickets.close()
        store.close()


def test_no_token_configured_refuses_everyone(tmp_path: Path) -> None:
    store, tickets = EmbeddedStore(":memory:"), TicketStore(f"sqlite:///{tmp_path / 't.db'}")
    try:
        with TestClient(create_app(site_config(), store, tickets, tokens={})) as client:
            resp = client.get("/api/v1/devices", headers={"Authorization": "Bearer "})
            assert_error(resp, 401, "unauthorized")
    finally:
        tickets.close()
        store.close()


@pytest.mark.parametrize(
    ("path", "params", "bad"),
    [
        ("/api/v1/tickets", {"limit": 501}, ["limit"]),
        ("/api/v1/tickets", {"limit": 0, "offset": -1}, ["limit", "offset"]),
        ("/api/v1/tickets", {"limit": "ten"}, ["limit"]),
        ("/api/v1/tickets", {"status": "FIXED"}, ["status"]),
        ("/api/v1/tickets/abc", {}, ["ticket_id"]),
        ("/api/v1/tickets/0", {}, ["ticket_id"]),
        ("/api/v1/tickets/99999999999999999999", {}, ["ticket_id"]),
        ("/api/v1/readings/latest", {"kind": "boiler"}, ["kind"]),
        ("/api/v1/readings/latest", {"building": "Z"}, ["building"]),
        ("/api/v1/readings/latest", {"device": "nope"}, ["device"]),
        ("/api/v1/reports/energy", {}, ["end", "start"]),
        ("/api/v1/reports/energy", {"start": "yesterday", "end": "2024-03-02"}, ["start"]),
        ("/api/v1/reports/energy", {"start": "2024-03-01", "end": "2024-02-30"}, ["end"]),
        ("/api/v1/reports/energy", {"start": "2024-03-02", "end": "2024-03-01"}, ["end"]),
        ("/api/v1/reports/energy", {"start": "2024-03-01", "end": "2024-03-01"}, ["end"]),
        (
            "/api/v1/reports/energy",
            {"start": "2024-03-01", "end": "2024-03-02", "every": "2h"},
            ["every"],
        ),
        (
            "/api/v1/reports/energy",
            {"start": "2023-01-01", "end": "2024-03-01", "every": "15m"},
            ["every"],
        ),
        ("/api/v1/reports/energy", {"start": "0001-01-01", "end": "2024-03-01"}, ["start"]),
        ("/api/v1/reports/energy", {"start": "2024-03-01", "end": "9999-12-31"}, ["end"]),
        (
            "/api/v1/reports/energy",
            {"start": "2024-03-01", "end": "2024-03-02", "device": "el-1"},
            ["device"],
        ),
        (
            "/api/v1/reports/energy",
            {"start": "2024-03-01", "end": "2024-03-02", "building": "Z"},
            ["building"],
        ),
    ],
)
def test_bad_parameters_are_400_naming_each_parameter(
    api: Api, path: str, params: dict[str, Any], bad: list[str]
) -> None:
    err = assert_error(api.get(path, **params), 400, "invalid_parameter")
    assert sorted({d["parameter"] for d in err["details"]}) == bad
    for name in bad:
        assert name in err["message"]


def test_unknown_route_and_wrong_method_keep_the_shape(api: Api) -> None:
    err = assert_error(api.get("/api/v1/nothing-here"), 404, "not_found")
    assert err["details"] == []
    assert_error(api.client.get("/nope"), 404, "not_found")
    resp = api.client.delete("/api/v1/tickets", headers={"Authorization": f"Bearer {TOKEN}"})
    assert_error(resp, 405, "method_not_allowed")


class _FaultyStore(EmbeddedStore):
    """A real EmbeddedStore with an injected fault in ``latest`` (there is no real way to make
    DuckDB raise an arbitrary bug on demand)."""

    def __init__(self, exc: Exception) -> None:
        super().__init__(":memory:")
        self.exc = exc

    def latest(
        self,
        devices: Sequence[str] | None = None,
        metrics: Sequence[str] | None = None,
        since: datetime | None = None,
    ) -> list[Reading]:
        raise self.exc


def test_an_unexpected_error_is_a_generic_500_logged_with_its_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = _FaultyStore(RuntimeError("secret internals: dsn=postgres://x"))
    tickets = TicketStore(f"sqlite:///{tmp_path / 't.db'}")
    app = create_app(site_config(), store, tickets, tokens={TOKEN: "viewer"}, clock=lambda: NOW)
    try:
        with TestClient(app) as client:
            resp = client.get("/api/v1/devices", headers={"Authorization": f"Bearer {TOKEN}"})
            err = assert_error(resp, 500, "internal_error")
            assert "secret" not in resp.text
            assert err["details"] == []
            # The app keeps serving afterwards.
            assert client.get("/health").status_code == 200
    finally:
        tickets.close()
        store.close()
    [record] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert record.exc_info is not None and "GET /api/v1/devices" in record.getMessage()
    assert TOKEN not in caplog.text


def test_an_unreachable_store_is_503(tmp_path: Path) -> None:
    store = _FaultyStore(RetryableStoreError("connection refused"))
    tickets = TicketStore(f"sqlite:///{tmp_path / 't.db'}")
    app = create_app(site_config(), store, tickets, tokens={TOKEN: "viewer"})
    try:
        with TestClient(app) as client:
            resp = client.get(
                "/api/v1/readings/latest", headers={"Authorization": f"Bearer {TOKEN}"}
            )
            assert_error(resp, 503, "store_unavailable")
    finally:
        tickets.close()
        store.close()


def test_a_failing_health_status_is_503(tmp_path: Path) -> None:
    def broken() -> dict[str, Any]:
        raise OSError("disk gone")

    store, tickets = EmbeddedStore(":memory:"), TicketStore(f"sqlite:///{tmp_path / 't.db'}")
    try:
        with TestClient(create_app(site_config(), store, tickets, status=broken)) as client:
            assert_error(client.get("/health"), 503, "unavailable")
    finally:
        tickets.close()
        store.close()


def test_openapi_docs_stay_available(api: Api) -> None:
    assert api.client.get("/docs").status_code == 200
    spec = api.client.get("/openapi.json").json()
    assert "/api/v1/reports/energy" in spec["paths"]
    assert "HTTPBearer" in spec["components"]["securitySchemes"]
