"""GET /api/v1/reports/savings over a real store: the numbers and warnings a user sees, and the
parameter errors in the API's one error shape.

Data: the store scenario of tests/reports/test_savings.py (buildings A and B, a year of daily
use on Shanghai-like weather, 10% saved in building A from 1 July 2024)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from alerts import TicketStore
from api import create_app
from config.models import SiteConfig
from store.embedded import EmbeddedStore
from tests.api.conftest import TOKEN
from tests.reports.test_savings import SAVING, Scenario, store_config, write_scenario

NOW = datetime(2024, 8, 5, 4, 0, tzinfo=UTC)  # 5 August, noon in Shanghai: July is last month


class SavingsApi:
    def __init__(self, client: TestClient, scenario: Scenario) -> None:
        self.client = client
        self.scenario = scenario

    def get(self, **params: Any) -> Any:
        r = self.client.get(
            "/api/v1/reports/savings",
            params=params,
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        return r


def _app(cfg: SiteConfig, tmp_path: Path) -> Iterator[SavingsApi]:
    store = EmbeddedStore(":memory:")
    scenario = write_scenario(store)
    tickets = TicketStore(f"sqlite:///{tmp_path / 'tickets.db'}")
    app = create_app(
        cfg,
        store,
        tickets,
        tokens={TOKEN: "viewer"},
        status=lambda: {"store": {"up": True, "outbox_depth": 0}},
        clock=lambda: NOW,
    )
    with TestClient(app) as client:
        yield SavingsApi(client, scenario)
    tickets.close()
    store.close()


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SavingsApi]:
    """One app for the module: the routes only read, and the scenario takes a second to write."""
    yield from _app(store_config(split_weekday_weekend=True), tmp_path_factory.mktemp("api"))


def test_last_full_month_by_default(api: SavingsApi) -> None:
    r = api.get()
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["reporting"] == {"first": "2024-07-01", "last": "2024-07-31", "days": 31}
    assert body["baseline"] == {"first": "2023-07-02", "last": "2024-06-30", "days": 365}
    assert body["currency"] == "CNY" and body["timezone"] == "Asia/Shanghai"
    assert body["split_weekday_weekend"] is True
    a = body["buildings"][0]
    assert a["building"] == "A" and a["name"] == "A座"
    assert [m["segment"] for m in a["model"]] == ["weekday", "weekend"]
    assert a["fit"]["n"] == 361 and a["fit"]["p"] == sum(m["fit"]["p"] for m in a["model"])
    assert a["verdict"] == "pass"
    assert a["savings_fraction"] == pytest.approx(SAVING, abs=0.025)
    assert abs(a["savings_kwh"] - api.scenario.true_saving_a) <= a["uncertainty"]["kwh"]
    assert a["savings_money"] > 0 and a["price_per_kwh"] > 0
    assert len(a["daily"]) == 31
    # Never a bare number: the figures that qualify it travel with it.
    for key in ("fit", "limits", "verdict", "uncertainty", "missing_days", "events", "model"):
        assert a[key] is not None, key
    assert api.get(month="2024-07").json() == body


def test_start_end_baseline_and_building(api: SavingsApi) -> None:
    r = api.get(
        start="2024-07-01",
        end="2024-07-16",
        baseline_start="2023-08-01",
        baseline_end="2024-07-01",
        building="A",
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["reporting"] == {"first": "2024-07-01", "last": "2024-07-15", "days": 15}
    assert body["baseline"] == {"first": "2023-08-01", "last": "2024-06-30", "days": 335}
    (a,) = body["buildings"]
    assert a["building"] == "A" and a["reporting_days_used"] == 15
    assert any("335 days" in w for w in a["warnings"])  # shorter than a year: warned


@pytest.mark.parametrize(
    ("params", "parameter", "text"),
    [
        ({"month": "2024-13"}, "month", "YYYY-MM"),
        ({"month": "2024-07", "start": "2024-07-01", "end": "2024-07-02"}, "month", "not both"),
        ({"start": "2024-07-01"}, "end", "together"),
        ({"start": "2024-07-05", "end": "2024-07-01"}, "end", "after start"),
        ({"start": "1 July", "end": "2024-07-02"}, "start", "YYYY-MM-DD"),
        ({"start": "2024-07-01", "end": "2029-07-02"}, "end", "at most"),
        ({"month": "0001-01"}, "month", "between"),
        ({"baseline_end": "2024-07-01"}, "baseline_start", "together"),
        ({"building": "Z"}, "building", "unknown building"),
    ],
)
def test_bad_parameters(api: SavingsApi, params: dict[str, str], parameter: str, text: str) -> None:
    r = api.get(**params)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["code"] == "invalid_parameter"
    assert err["details"][0]["parameter"] == parameter
    assert text in err["details"][0]["message"]


def test_a_bad_temperature_file_names_file_and_line(tmp_path: Path) -> None:
    csv = tmp_path / "weather.csv"
    csv.write_text("time,temperature\n2024-07-01T00:00,28.5\n2024-07-01T01:00,hot\n", "utf-8")
    cfg = store_config(temperature={"csv": str(csv)})
    for api in _app(cfg, tmp_path):
        r = api.get()
        assert r.status_code == 422, r.text
        err = r.json()["error"]
        assert err["code"] == "invalid_weather_data"
        assert f"{csv}:3: temperature 'hot' is not a number" in err["message"]


def test_requires_a_token(api: SavingsApi) -> None:
    r = api.client.get("/api/v1/reports/savings")
    assert r.status_code == 401
