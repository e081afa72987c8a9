"""Grafana dashboards for a site, generated from its config, and their provisioning.

A package of its own because nothing here is a stage of facmon's pipeline: the dashboards are
derived from the site config (its buildings, devices, ratings and rules) and consumed by
Grafana, which reads the InfluxDB store directly. facmon only writes the files
(``facmon grafana export``) or sends them through Grafana's HTTP API (``facmon grafana
push``); a running facmon only uses :func:`device_panel_url` (the API's ticket links).

* :func:`generate` -- the site's dashboards (:mod:`dashboards.generate` says what is on them);
* :mod:`dashboards.model` -- the typed dashboard JSON they are built in and validated against;
* :func:`export` -- dashboard JSON files and Grafana's file provisioning (datasource and
  dashboard provider YAML) into a directory;
* :func:`push` -- datasource, folder and dashboards through Grafana's HTTP API, idempotently;
* :func:`device_panel_url` -- the Grafana link of a device's panel, for tickets.
"""

from dashboards.generate import generate
from dashboards.links import device_panel_url
from dashboards.provisioning import export
from dashboards.push import push

__all__ = ["device_panel_url", "export", "generate", "push"]
