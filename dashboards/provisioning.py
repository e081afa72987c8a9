"""Grafana's file provisioning for a site: datasource YAML, dashboard provider YAML and one
JSON file per dashboard, laid out for a Grafana container::

    DIR/provisioning/datasources/facmon-<site>.yaml   -> /etc/grafana/provisioning/datasources
    DIR/provisioning/dashboards/facmon-<site>.yaml    -> /etc/grafana/provisioning/dashboards
    DIR/dashboards/facmon-<site>/<uid>.json           -> <dashboards_path>/facmon-<site>/

The datasource is InfluxDB in InfluxQL mode. Its URL, database and credentials are Grafana
environment references (``${INFLUX_URL}``, ``${INFLUX_BUCKET}``, ``${INFLUX_TOKEN}``; the
prefix is ``grafana.datasource_env_prefix``), which Grafana substitutes when it reads the
file: no secret is ever written. InfluxDB 2.x/3.x take the token as an
``Authorization: Token`` header (2.x reads the bucket through its DBRP mapping, see ``facmon
influx init``); a 1.x config with a ``username`` gets user and password instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from config.models import SiteConfig
from dashboards.generate import generate
from dashboards.links import datasource_uid, folder_uid
from dashboards.model import INFLUXDB

DASHBOARDS_PATH = "/var/lib/grafana/dashboards"


@dataclass(frozen=True)
class DatasourceValues:
    """What a datasource needs to reach InfluxDB: literal values (push) or ``${ENV}``
    references (provisioning files)."""

    url: str
    database: str
    token: str | None = None  # 2.x/3.x: sent as "Authorization: Token <token>"
    user: str | None = None  # 1.x with authentication
    password: str | None = None


def datasource_name(config: SiteConfig) -> str:
    return f"facmon {config.site.id} (InfluxDB)"


def datasource_body(config: SiteConfig, values: DatasourceValues) -> dict[str, Any]:
    """The datasource as Grafana's API and provisioning files both spell it."""
    json_data: dict[str, Any] = {
        "dbName": values.database,
        # POST keeps long queries (many devices) out of URLs, which proxies cut at a few kB.
        "httpMode": "POST",
        "timeInterval": "10s",  # the default poll interval: $__interval never goes below it
    }
    secure: dict[str, str] = {}
    body: dict[str, Any] = {
        "uid": datasource_uid(config),
        "name": datasource_name(config),
        "type": INFLUXDB,
        "access": "proxy",
        "url": values.url,
        "isDefault": False,
        "jsonData": json_data,
    }
    if values.token is not None:
        json_data["httpHeaderName1"] = "Authorization"
        secure["httpHeaderValue1"] = f"Token {values.token}"
    elif values.user is not None:
        body["user"] = values.user
        secure["password"] = values.password or ""
    if secure:
        body["secureJsonData"] = secure
    return body


def env_values(config: SiteConfig) -> DatasourceValues:
    """``${PREFIX_URL}``-style references, with the kind of credentials the config uses."""
    p = config.grafana.datasource_env_prefix
    influx = config.storage.influxdb
    if influx is not None and influx.token is None and influx.username:
        return DatasourceValues(
            url=f"${{{p}_URL}}",
            database=f"${{{p}_BUCKET}}",
            user=f"${{{p}_USER}}",
            password=f"${{{p}_PASSWORD}}",
        )
    if influx is not None and influx.token is None:
        return DatasourceValues(url=f"${{{p}_URL}}", database=f"${{{p}_BUCKET}}")
    # No InfluxDB in the config (the demo's embedded store): a 2.x deployment is assumed.
    return DatasourceValues(
        url=f"${{{p}_URL}}", database=f"${{{p}_BUCKET}}", token=f"${{{p}_TOKEN}}"
    )


def env_names(config: SiteConfig) -> list[str]:
    """The environment variables the provisioning files of ``config`` read."""
    v = env_values(config)
    refs = [v.url, v.database, v.token, v.user, v.password]
    return [r[2:-1] for r in refs if r is not None]


def _yaml(data: dict[str, Any], header: str) -> str:
    text: str = yaml.safe_dump(data, allow_unicode=True, sort_keys=False, width=100)
    return header + text


def export(config: SiteConfig, out_dir: Path, dashboards_path: str = DASHBOARDS_PATH) -> list[Path]:
    """Write the site's provisioning into ``out_dir`` (layout in the module doc); returns the
    files written. Files of an earlier export of the same site are replaced; dashboards that
    are no longer generated are removed from the site's directory."""
    name = f"facmon-{config.site.id}"
    ds_file = out_dir / "provisioning" / "datasources" / f"{name}.yaml"
    provider_file = out_dir / "provisioning" / "dashboards" / f"{name}.yaml"
    board_dir = out_dir / "dashboards" / name
    for d in (ds_file.parent, provider_file.parent, board_dir):
        d.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    envs = ", ".join(env_names(config))
    ds = datasource_body(config, env_values(config))
    ds["editable"] = False
    ds_file.write_text(
        _yaml(
            {"apiVersion": 1, "datasources": [ds]},
            f"# InfluxDB (InfluxQL) datasource of facmon site {config.site.id!r}.\n"
            f"# Generated by 'facmon grafana export'; Grafana reads {envs} from its "
            "environment.\n",
        ),
        encoding="utf-8",
    )
    written.append(ds_file)
    provider = {
        "apiVersion": 1,
        "providers": [
            {
                "name": name,
                "orgId": 1,
                "folder": config.grafana.folder or config.site.name,
                "folderUid": folder_uid(config),
                "type": "file",
                "disableDeletion": False,
                # The files are generated: edits in the UI would be lost at the next export.
                "allowUiUpdates": False,
                "updateIntervalSeconds": 60,
                "options": {"path": f"{dashboards_path.rstrip('/')}/{name}"},
            }
        ],
    }
    provider_file.write_text(
        _yaml(
            provider,
            f"# Dashboards of facmon site {config.site.id!r}, one folder per site.\n"
            "# Generated by 'facmon grafana export'.\n",
        ),
        encoding="utf-8",
    )
    written.append(provider_file)
    keep: set[Path] = set()
    for board in generate(config):
        path = board_dir / f"{board.uid}.json"
        text = json.dumps(board.to_json(), ensure_ascii=False, indent=2) + "\n"
        path.write_text(text, encoding="utf-8")
        keep.add(path)
        written.append(path)
    for stale in board_dir.glob("*.json"):
        if stale not in keep:
            stale.unlink()
    return written
