"""``facmon grafana export|push``: the argument parsers and the two commands.

Kept beside the dashboards rather than in ``facmon/cli.py`` so the facmon command only
registers them (:func:`add_parser`) and imports this package when one of them runs.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from facmon.cliargs import add_group, add_site_args, site_from_args

TOKEN_ENV = "GRAFANA_TOKEN"


def add_parser(sub: Any) -> None:
    """Register ``grafana export`` and ``grafana push`` on the facmon command's subparsers."""
    gsub = add_group(
        sub,
        "grafana",
        summary="Grafana dashboards generated from the site config",
        description="Grafana dashboards generated from the site config: an engineering "
        "overview per building, electrical panels, elevators, water and facmon's own health, "
        "with building/floor/device variables, InfluxQL queries on the InfluxDB store and the "
        "alert rules as annotations. 'export' writes files for Grafana's provisioning, 'push' "
        "sends them through Grafana's HTTP API.",
    )
    ge = gsub.add_parser(
        "export",
        help="write dashboard JSON and provisioning YAML into a directory",
        description="Write the site's dashboards (one JSON file each) and Grafana's "
        "provisioning files (an InfluxDB datasource in InfluxQL mode and a dashboard provider "
        "with a folder per site) into DIR: DIR/provisioning/{datasources,dashboards}/ and "
        "DIR/dashboards/facmon-SITE/. Mount DIR/provisioning at /etc/grafana/provisioning and "
        "DIR/dashboards at --dashboards-path. The datasource reads its URL, database and token "
        "from environment variables of the Grafana process (named in the file; no secret is "
        "written). Without --config: the demo site. Running it again replaces the files.",
        epilog="Example: facmon grafana export deploy/grafana --config site.yaml",
    )
    ge.add_argument("dir", metavar="DIR", type=Path, help="directory to write into")
    add_site_args(ge, data_dir=False)
    ge.add_argument(
        "--dashboards-path",
        default="/var/lib/grafana/dashboards",
        metavar="PATH",
        help="where Grafana sees DIR/dashboards (default /var/lib/grafana/dashboards)",
    )
    ge.set_defaults(func=cmd_export)
    gp = gsub.add_parser(
        "push",
        help="create or update the datasource, folder and dashboards in a Grafana",
        description="Create or update, through Grafana's HTTP API, the site's InfluxDB "
        "datasource (from storage.influxdb of the config, credentials included), a folder "
        "for the site and its dashboards. Safe to run again: everything is found by a uid "
        "derived from the site id, and dashboards that did not change are left alone. The "
        "API token (a Grafana service account token with the Admin role: creating and "
        "updating datasources needs it) is read from the environment variable --token-env "
        "names; it is never printed.",
        epilog="Example: GRAFANA_TOKEN=glsa_... facmon grafana push --url "
        "https://grafana.example.com --config site.yaml",
    )
    gp.add_argument("--url", required=True, help="Grafana's base URL, e.g. http://127.0.0.1:3000")
    gp.add_argument(
        "--token-env",
        default=TOKEN_ENV,
        metavar="NAME",
        help=f"environment variable holding the API token (default {TOKEN_ENV})",
    )
    add_site_args(gp, data_dir=False)
    gp.add_argument(
        "--influx-url",
        default=None,
        metavar="URL",
        help="InfluxDB URL as Grafana reaches it (default: storage.influxdb.url; required when "
        "the config has no InfluxDB)",
    )
    gp.add_argument("--timeout", type=float, default=10.0, help="seconds per request (default 10)")
    gp.set_defaults(func=cmd_push)


def cmd_export(args: argparse.Namespace) -> int:
    from dashboards.provisioning import env_names, export

    cfg = site_from_args(args, "dashboards of")
    if cfg is None:
        return 2
    files = export(cfg, args.dir, args.dashboards_path)
    for f in files:
        print(f)
    print(
        f"{len(files) - 2} dashboards of site {cfg.site.id!r}; Grafana needs "
        f"{', '.join(env_names(cfg))} in its environment",
        file=sys.stderr,
    )
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    from dashboards.provisioning import DatasourceValues
    from dashboards.push import PushError, push

    cfg = site_from_args(args, "dashboards of")
    if cfg is None:
        return 2
    token = os.environ.get(args.token_env, "").strip()
    if not token:
        print(f"facmon: set {args.token_env} to a Grafana API token", file=sys.stderr)
        return 2
    influx = cfg.storage.influxdb
    url = args.influx_url or (influx.url if influx is not None else None)
    if url is None:
        print("facmon: the config has no storage.influxdb: give --influx-url", file=sys.stderr)
        return 2
    values = DatasourceValues(
        url=url,
        database=influx.bucket if influx is not None else "facmon",
        token=influx.token.get_secret_value() if influx is not None and influx.token else None,
        user=influx.username if influx is not None and influx.token is None else None,
        password=(
            influx.password.get_secret_value()
            if influx is not None and influx.token is None and influx.password
            else None
        ),
    )
    try:
        result = push(cfg, args.url, token, values, timeout=args.timeout)
    except PushError as e:
        print(f"facmon: {e}", file=sys.stderr)
        return 1
    print(f"{args.url}: {result.summary()}")
    return 0
