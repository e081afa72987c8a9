"""``facmon grafana push`` against a local stand-in for Grafana's HTTP API
(tests/dashboards/fake_grafana.py: a fake, as no Grafana server can run here; it checks the
requests as Grafana's API reference documents them)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from config import SiteConfig
from config.models import Grafana
from dashboards import generate
from dashboards.provisioning import DatasourceValues, datasource_name
from dashboards.push import PushError, push
from facmon.cli import main
from tests.dashboards.fake_grafana import FakeGrafana

TOKEN = "glsa_test-token-0123456789"
INFLUX = DatasourceValues(url="http://influxdb:8086", database="facmon", token="influx-secret")


@pytest.fixture
def grafana() -> Iterator[FakeGrafana]:
    with FakeGrafana(TOKEN) as server:
        yield server


def _calls(server: FakeGrafana, since: int = 0) -> list[tuple[str, str]]:
    return [(r.method, r.path) for r in server.state.requests[since:]]


def test_first_push_creates_datasource_folder_and_dashboards(
    grafana: FakeGrafana, demo_site: SiteConfig
) -> None:
    result = push(demo_site, grafana.url, TOKEN, INFLUX)
    assert result.datasource == "created" and result.folder == "created"
    uids = [b.uid for b in generate(demo_site)]
    assert result.dashboards == dict.fromkeys(uids, "created")
    assert all(r.headers["Authorization"] == f"Bearer {TOKEN}" for r in grafana.state.requests)
    state = grafana.state
    ds = state.datasources["fm-demo-influxdb"]
    assert ds["type"] == "influxdb" and ds["access"] == "proxy"
    assert ds["name"] == datasource_name(demo_site)
    assert ds["url"] == "http://influxdb:8086" and ds["jsonData"]["dbName"] == "facmon"
    assert ds["secureJsonData"] == {"httpHeaderValue1": "Token influx-secret"}
    assert state.folders["fm-demo"]["title"] == demo_site.site.name
    posts = [r for r in state.requests if r.path == "/api/dashboards/db"]
    assert [p.body["dashboard"]["uid"] for p in posts] == uids
    for p in posts:
        assert p.body["folderUid"] == "fm-demo" and p.body["overwrite"] is True
        assert "id" not in p.body["dashboard"]  # new dashboards are matched by uid
    assert {u: d["meta"]["folderUid"] for u, d in state.dashboards.items()} == dict.fromkeys(
        uids, "fm-demo"
    )


def test_second_push_changes_nothing(grafana: FakeGrafana, demo_site: SiteConfig) -> None:
    push(demo_site, grafana.url, TOKEN, INFLUX)
    versions = {u: d["dashboard"]["version"] for u, d in grafana.state.dashboards.items()}
    folders = dict(grafana.state.folders)
    n = len(grafana.state.requests)
    result = push(demo_site, grafana.url, TOKEN, INFLUX)
    assert result.datasource == "updated"  # secrets cannot be read back: always written
    assert result.folder == "unchanged"
    assert set(result.dashboards.values()) == {"unchanged"}
    calls = _calls(grafana, n)
    assert ("POST", "/api/dashboards/db") not in calls
    assert not any(m == "POST" for m, _ in calls)  # nothing created twice
    assert {u: d["dashboard"]["version"] for u, d in grafana.state.dashboards.items()} == versions
    assert grafana.state.folders == folders
    assert len(grafana.state.datasources) == 1


def test_a_changed_site_updates_in_place(grafana: FakeGrafana, demo_site: SiteConfig) -> None:
    push(demo_site, grafana.url, TOKEN, INFLUX)
    renamed = demo_site.model_copy(
        update={
            "site": demo_site.site.model_copy(update={"name": "Riverside (renamed)"}),
            "grafana": Grafana(folder="Riverside portfolio"),
        }
    )
    result = push(renamed, grafana.url, TOKEN, INFLUX)
    assert result.folder == "renamed"
    assert grafana.state.folders["fm-demo"]["title"] == "Riverside portfolio"
    assert set(result.dashboards.values()) == {"updated"}  # titles carry the site name
    for d in grafana.state.dashboards.values():
        assert d["dashboard"]["version"] == 2
        assert d["dashboard"]["title"].startswith("Riverside (renamed) · ")
    assert len(grafana.state.dashboards) == 5 and len(grafana.state.folders) == 1


def test_a_refused_token_is_an_error_that_does_not_show_it(
    grafana: FakeGrafana, demo_site: SiteConfig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with pytest.raises(PushError) as e:
        push(demo_site, grafana.url, "wrong-token-xyz", INFLUX)
    assert "Unauthorized" in str(e.value) and "wrong-token-xyz" not in str(e.value)
    assert "wrong-token-xyz" not in caplog.text and "influx-secret" not in caplog.text


def test_unreachable_grafana_is_an_error(demo_site: SiteConfig) -> None:
    with FakeGrafana(TOKEN) as server:
        url = server.url
    with pytest.raises(PushError, match="unreachable"):
        push(demo_site, url, TOKEN, INFLUX, timeout=2)


def test_cli_push_reads_the_token_from_the_environment(
    grafana: FakeGrafana,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.delenv("MY_GRAFANA_TOKEN", raising=False)
    args = ["grafana", "push", "--url", grafana.url, "--token-env", "MY_GRAFANA_TOKEN"]
    assert main([*args, "--influx-url", "http://influxdb:8086"]) == 2
    assert "MY_GRAFANA_TOKEN" in capsys.readouterr().err
    monkeypatch.setenv("MY_GRAFANA_TOKEN", TOKEN)
    assert main(args) == 2  # the demo has no InfluxDB: the URL must be given
    assert "--influx-url" in capsys.readouterr().err
    assert main([*args, "--influx-url", "http://influxdb:8086"]) == 0
    out = capsys.readouterr()
    assert "dashboards: 5 created" in out.out
    assert main([*args, "--influx-url", "http://influxdb:8086"]) == 0
    out2 = capsys.readouterr()
    assert "dashboards: 5 unchanged" in out2.out
    for text in (out.out, out.err, out2.out, out2.err, caplog.text):
        assert TOKEN not in text
    ds = grafana.state.datasources["fm-demo-influxdb"]
    assert ds["url"] == "http://influxdb:8086" and "secureJsonData" not in ds
