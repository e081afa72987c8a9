"""Datasource, folder and dashboards of a site through Grafana's HTTP API (grafana-client).

Idempotent: everything is addressed by its stable uid (``dashboards.links``). The datasource
is created, or updated in place (its secrets cannot be read back, so it is always written);
the folder is created, or renamed when its title changed; a dashboard is posted with
``overwrite: true`` only when it differs from the one Grafana has, so a second push of an
unchanged site adds no dashboard versions.

The token authenticates as ``Authorization: Bearer`` (a service account token); it is never
logged or put in an error message.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from grafana_client import GrafanaApi
from grafana_client.client import GrafanaClientError, GrafanaException

from config.models import SiteConfig
from dashboards.generate import generate
from dashboards.links import folder_uid
from dashboards.provisioning import DatasourceValues, datasource_body

log = logging.getLogger(__name__)

# Keys Grafana adds or bumps on every save; equal dashboards may differ in them.
_VOLATILE = ("id", "version")


class PushError(RuntimeError):
    """Grafana refused a request or could not be reached (the message says which)."""


@dataclass
class PushResult:
    datasource: str = ""  # created | updated
    folder: str = ""  # created | renamed | unchanged
    dashboards: dict[str, str] = field(default_factory=dict)  # uid -> created|updated|unchanged

    def summary(self) -> str:
        counts: dict[str, int] = {}
        for what in self.dashboards.values():
            counts[what] = counts.get(what, 0) + 1
        boards = ", ".join(f"{n} {what}" for what, n in sorted(counts.items()))
        return f"datasource {self.datasource}; folder {self.folder}; dashboards: {boards}"


def push(
    config: SiteConfig,
    url: str,
    token: str,
    datasource: DatasourceValues,
    timeout: float = 10.0,
) -> PushResult:
    """Create or update the site's datasource, folder and dashboards in the Grafana at
    ``url``. Raises :class:`PushError`."""
    api: Any = GrafanaApi.from_url(url=url, credential=token, timeout=timeout)
    result = PushResult()
    try:
        result.datasource = _datasource(api, datasource_body(config, datasource))
        result.folder = _folder(api, folder_uid(config), config.grafana.folder or config.site.name)
        for board in generate(config):
            result.dashboards[board.uid] = _dashboard(api, board.to_json(), folder_uid(config))
    except GrafanaException as e:
        raise PushError(f"Grafana at {url} refused: {_describe(e)}") from None
    except OSError as e:  # requests' connection errors are OSErrors
        raise PushError(f"Grafana at {url} is unreachable: {e}") from None
    return result


def _missing(e: GrafanaClientError) -> bool:
    return bool(e.status_code == 404)


def _describe(e: GrafanaException) -> str:
    # grafana-client's message holds the status and Grafana's answer, never the request.
    return str(e.message) if getattr(e, "message", None) else f"HTTP {e.status_code}"


def _datasource(api: Any, body: dict[str, Any]) -> str:
    uid = body["uid"]
    try:
        api.datasource.get_datasource_by_uid(uid)
    except GrafanaClientError as e:
        if not _missing(e):
            raise
        api.datasource.create_datasource(body)
        log.info("datasource %s created", uid)
        return "created"
    api.datasource.update_datasource_by_uid(uid, body)
    log.info("datasource %s updated", uid)
    return "updated"


def _folder(api: Any, uid: str, title: str) -> str:
    try:
        found = api.folder.get_folder(uid)
    except GrafanaClientError as e:
        if not _missing(e):
            raise
        api.folder.create_folder(title, uid=uid)
        log.info("folder %s (%s) created", uid, title)
        return "created"
    if found.get("title") == title:
        return "unchanged"
    api.folder.update_folder(uid, title=title, overwrite=True)
    log.info("folder %s renamed to %s", uid, title)
    return "renamed"


def _comparable(board: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in board.items() if k not in _VOLATILE}


def _dashboard(api: Any, board: dict[str, Any], folder: str) -> str:
    uid = board["uid"]
    state = "created"
    try:
        found = api.dashboard.get_dashboard(uid)
    except GrafanaClientError as e:
        if not _missing(e):
            raise
    else:
        meta = found.get("meta") or {}
        same_folder = meta.get("folderUid", folder) == folder
        if same_folder and _comparable(found.get("dashboard") or {}) == _comparable(board):
            return "unchanged"
        state = "updated"
    api.dashboard.update_dashboard(
        {
            "dashboard": board,
            "folderUid": folder,
            "overwrite": True,
            "message": "facmon grafana push",
        }
    )
    log.info("dashboard %s %s", uid, state)
    return state
