"""The generated dashboards against the dashboard model, the exported files, stable uids and
the links from tickets to device panels."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from config import ConfigError, SiteConfig, load_config, load_config_text
from config.models import Grafana, Site, Storage
from dashboards import device_panel_url, export, generate
from dashboards.links import DEVICE_PANELS, uid
from dashboards.model import Dashboard, InfluxQLTarget
from facmon.checks import CHECKS
from tests.dashboards.conftest import load_demo

REPO = Path(__file__).parents[2]


def test_every_generated_dashboard_validates(demo_site: SiteConfig) -> None:
    for board in generate(demo_site):
        data = board.to_json()
        again = Dashboard.model_validate(data)
        assert again.to_json() == data  # nothing dropped or added on the way through JSON
        assert all(len(p.targets) for p in board.all_panels() if p.type != "text")


def test_export_writes_valid_dashboards_and_provisioning(
    demo_site: SiteConfig, tmp_path: Path
) -> None:
    files = export(demo_site, tmp_path, dashboards_path="/dash")
    boards = sorted((tmp_path / "dashboards" / "facmon-demo").glob("*.json"))
    assert len(boards) == 5 and set(boards) <= set(files)
    for f in boards:
        board = Dashboard.model_validate_json(f.read_text(encoding="utf-8"))
        assert f.name == f"{board.uid}.json"
        assert board.id is None  # Grafana numbers dashboards itself
    ds = yaml.safe_load((tmp_path / "provisioning/datasources/facmon-demo.yaml").read_text())
    [source] = ds["datasources"]
    assert ds["apiVersion"] == 1
    assert source["type"] == "influxdb" and source["uid"] == "fm-demo-influxdb"
    assert source["url"] == "${INFLUX_URL}"
    assert source["jsonData"]["dbName"] == "${INFLUX_BUCKET}"
    assert source["jsonData"]["httpHeaderName1"] == "Authorization"
    assert source["secureJsonData"]["httpHeaderValue1"] == "Token ${INFLUX_TOKEN}"
    provider = yaml.safe_load((tmp_path / "provisioning/dashboards/facmon-demo.yaml").read_text())
    [p] = provider["providers"]
    assert p["type"] == "file" and p["folderUid"] == "fm-demo"
    assert p["folder"] == demo_site.site.name
    assert p["options"]["path"] == "/dash/facmon-demo"
    # Every panel and variable reads the provisioned datasource.
    for f in boards:
        data = json.loads(f.read_text())
        used = {
            t["datasource"]["uid"]
            for panel in data["panels"]
            for t in panel.get("targets", [])
            if t["datasource"]["type"] == "influxdb"
        } | {v["datasource"]["uid"] for v in data["templating"]["list"]}
        assert used <= {source["uid"]}


def test_export_writes_no_secret(demo_site: SiteConfig, tmp_path: Path) -> None:
    storage = Storage.model_validate(
        {"backend": "influxdb", "influxdb": {"url": "http://i:8086", "token": "s3cret-token"}}
    )
    export(demo_site.model_copy(update={"storage": storage}), tmp_path)
    texts = [f.read_text(encoding="utf-8") for f in tmp_path.rglob("*") if f.is_file()]
    assert texts and not any("s3cret-token" in t for t in texts)
    ds = yaml.safe_load((tmp_path / "provisioning/datasources/facmon-demo.yaml").read_text())
    assert ds["datasources"][0]["secureJsonData"] == {"httpHeaderValue1": "Token ${INFLUX_TOKEN}"}


def test_a_1x_config_gets_user_and_password(demo_site: SiteConfig, tmp_path: Path) -> None:
    storage = Storage.model_validate(
        {
            "backend": "influxdb",
            "influxdb": {"url": "http://i:8086", "username": "grafana", "password": "pw"},
        }
    )
    export(demo_site.model_copy(update={"storage": storage}), tmp_path)
    ds = yaml.safe_load((tmp_path / "provisioning/datasources/facmon-demo.yaml").read_text())
    [source] = ds["datasources"]
    assert source["user"] == "${INFLUX_USER}"
    assert source["secureJsonData"] == {"password": "${INFLUX_PASSWORD}"}
    assert "httpHeaderName1" not in source["jsonData"]


# deploy/site.yaml takes these from the environment; the export writes none of their values.
_DEPLOY_ENV = (
    "INFLUX_BUCKET",
    "INFLUX_ORG",
    "INFLUX_TOKEN",
    "TICKETS_DB_USER",
    "TICKETS_DB_PASSWORD",
    "TICKETS_DB_NAME",
    "MQTT_USERNAME",
    "MQTT_PASSWORD",
)


def test_the_committed_deploy_provisioning_is_current(tmp_path: Path) -> None:
    """deploy/grafana/ is what `facmon grafana export deploy/grafana --config deploy/site.yaml`
    writes for the site compose runs, and nothing else (no other site's folder)."""
    site = load_config(
        REPO / "deploy" / "site.yaml",
        checks=CHECKS,
        env={name: f"placeholder-{name.lower()}" for name in _DEPLOY_ENV},
    )
    export(site, tmp_path)
    committed = REPO / "deploy" / "grafana"
    fix = "run facmon grafana export deploy/grafana --config deploy/site.yaml"
    written = {f.relative_to(tmp_path) for f in tmp_path.rglob("*") if f.is_file()}
    there = {
        f.relative_to(committed)
        for f in committed.rglob("*")
        if f.is_file() and f.name != "README.md"
    }
    assert there == written, f"deploy/grafana holds other files than the export: {fix}"
    for rel in sorted(written):
        text = (tmp_path / rel).read_text(encoding="utf-8")
        assert "placeholder-" not in text
        assert (committed / rel).read_text(encoding="utf-8") == text, (
            f"deploy/grafana/{rel} is stale: {fix}"
        )


def test_uids_are_stable_and_fit_grafana(demo_site: SiteConfig) -> None:
    assert [b.uid for b in generate(demo_site)] == [b.uid for b in generate(load_demo())]
    assert [b.to_json() for b in generate(demo_site)] == [b.to_json() for b in generate(demo_site)]
    long_id = "a" * 64
    made = uid(long_id, "electrical")
    assert len(made) <= 40 and made == uid(long_id, "electrical") != uid("b" * 64, "electrical")
    site = demo_site.model_copy(update={"site": Site(id=long_id, name="Long")})
    for board in generate(site):
        assert len(board.uid) <= 40


def _broken(board: dict[str, Any], change: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(json.dumps(board))
    panels = [p for p in data["panels"] if p["type"] != "row"]
    if change == "duplicate id":
        panels[1]["id"] = panels[0]["id"]
    elif change == "unknown key":
        panels[0]["fieldConfig"]["defaults"]["unti"] = "kW"
    elif change == "off the grid":
        panels[0]["gridPos"].update(x=20, w=8)
    elif change == "undefined variable":
        panels[0]["targets"][0]["query"] += " AND $tenant"
    elif change == "expression names a missing query":
        exprs = [p for p in panels if any(t.get("type") == "math" for t in p["targets"])]
        exprs[0]["targets"][-1]["expression"] = "$A / $Z"
    elif change == "uid too long":
        data["uid"] = "x" * 41
    return data


@pytest.mark.parametrize(
    "change",
    [
        "duplicate id",
        "unknown key",
        "off the grid",
        "undefined variable",
        "expression names a missing query",
        "uid too long",
    ],
)
def test_the_model_refuses_broken_dashboards(demo_site: SiteConfig, change: str) -> None:
    board = next(b for b in generate(demo_site) if b.uid == "fm-demo-elevators").to_json()
    with pytest.raises(ValidationError):
        Dashboard.model_validate(_broken(board, change))


def test_device_panel_url(demo_site: SiteConfig) -> None:
    assert device_panel_url(demo_site, "mall-elevator-1") is None  # no grafana.url
    site = demo_site.model_copy(update={"grafana": Grafana(url="https://grafana.example.com/")})
    assert device_panel_url(site, "no-such-device") is None
    boards = {b.uid: b for b in generate(site)}
    for device in site.devices:
        url = device_panel_url(site, device.id)
        assert url is not None
        role, panel_id = DEVICE_PANELS[device.kind]
        assert url.startswith(f"https://grafana.example.com/d/fm-demo-{role}?")
        assert f"var-device={device.id}" in url and f"viewPanel={panel_id}" in url
        assert f"var-building={device.location.building}" in url
        # The linked panel exists and is filtered by the device variable.
        panel = next(p for p in boards[f"fm-demo-{role}"].all_panels() if p.id == panel_id)
        assert any(isinstance(t, InfluxQLTarget) and "$device" in t.query for t in panel.targets)
        kinds_in_query = panel.targets[0].query  # type: ignore[union-attr]
        assert f"'{device.kind}'" in kinds_in_query


def test_a_bad_grafana_block_names_file_line_and_field() -> None:
    text = (
        "site: {id: s, name: S}\n"
        "buildings: [{id: b, name: B, floor_area_m2: 100, floors: 1}]\n"
        "grafana:\n"
        "  url: https://grafana.example.com\n"
        "  datasource_env_prefix: influx-prod\n"
    )
    with pytest.raises(ConfigError) as e:
        load_config_text(text, filename="site.yaml")
    assert "site.yaml:5 grafana.datasource_env_prefix" in str(e.value)
    ok = load_config_text(text.replace("influx-prod", "INFLUX_PROD"), filename="site.yaml")
    assert ok.grafana.url == "https://grafana.example.com" and ok.grafana.folder is None
