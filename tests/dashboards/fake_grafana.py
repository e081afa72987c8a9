"""A stand-in for Grafana's HTTP API on loopback: no Grafana server can run here.

It serves the endpoints ``facmon grafana push`` uses, checking each request the way Grafana's
HTTP API reference documents it and answering with the documented status codes and bodies:

* every request: ``Authorization: Bearer <token>`` (service account token), else 401;
  bodies are JSON (``Content-Type: application/json``), else 415;
* datasources: ``GET /api/datasources/uid/:uid`` (404 ``Data source not found``),
  ``POST /api/datasources`` (``name``, ``type``, ``access``, ``url`` required; 409 when the name
  or uid exists), ``PUT /api/datasources/uid/:uid``;
* folders: ``GET /api/folders/:uid`` (404), ``POST /api/folders`` (``title``; 409 when the uid
  exists), ``PUT /api/folders/:uid`` (needs ``version`` or ``overwrite: true``, else 412);
* dashboards: ``GET /api/dashboards/uid/:uid`` (404 ``Dashboard not found``) and
  ``POST /api/dashboards/db`` with ``{dashboard, folderUid, overwrite, message}``: the
  dashboard needs ``title``; an existing uid without ``overwrite`` is 412; an unknown
  ``folderUid`` is 400; the answer is ``{id, uid, url, status: success, version, slug}``.

Everything it accepted is kept (``datasources``, ``folders``, ``dashboards``) and every request
is logged in ``requests`` for the tests to inspect.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class State:
    datasources: dict[str, dict[str, Any]] = field(default_factory=dict)
    folders: dict[str, dict[str, Any]] = field(default_factory=dict)
    dashboards: dict[str, dict[str, Any]] = field(default_factory=dict)  # uid -> {dashboard, meta}
    requests: list[Request] = field(default_factory=list)
    next_id: int = 1


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as two writes
    server: FakeGrafana

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                self._reply(400, {"message": "bad request data"})
                return
        req = Request(self.command, self.path, dict(self.headers.items()), body)
        with self.server.lock:
            self.server.state.requests.append(req)
            status, answer = self.server.route(req)
        self._reply(status, answer)

    def _reply(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class FakeGrafana(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, token: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.token = token
        self.state = State()
        self.lock = threading.Lock()
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self) -> FakeGrafana:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.shutdown()
        self.server_close()

    def _id(self) -> int:
        self.state.next_id += 1
        return self.state.next_id - 1

    # -- routing --------------------------------------------------------------------------
    def route(self, r: Request) -> tuple[int, Any]:
        if r.headers.get("Authorization") != f"Bearer {self.token}":
            return 401, {"message": "Unauthorized"}
        if r.method in ("POST", "PUT") and not r.headers.get("Content-Type", "").startswith(
            "application/json"
        ):
            return 415, {"message": "Unsupported Media Type"}
        routes: list[tuple[str, str, Callable[..., tuple[int, Any]]]] = [
            ("GET", r"/api/datasources/uid/([^/]+)", self._get_datasource),
            ("POST", r"/api/datasources", self._create_datasource),
            ("PUT", r"/api/datasources/uid/([^/]+)", self._update_datasource),
            ("GET", r"/api/folders/([^/]+)", self._get_folder),
            ("POST", r"/api/folders", self._create_folder),
            ("PUT", r"/api/folders/([^/]+)", self._update_folder),
            ("GET", r"/api/dashboards/uid/([^/]+)", self._get_dashboard),
            ("POST", r"/api/dashboards/db", self._save_dashboard),
        ]
        for method, pattern, fn in routes:
            m = re.fullmatch(pattern, r.path)
            if m and method == r.method:
                return fn(r, *m.groups())
        return 404, {"message": "Not found"}

    def _get_datasource(self, r: Request, uid: str) -> tuple[int, Any]:
        ds = self.state.datasources.get(uid)
        if ds is None:
            return 404, {"message": "Data source not found"}
        return 200, {k: v for k, v in ds.items() if k != "secureJsonData"}  # secrets stay

    def _check_datasource(self, body: Any) -> str | None:
        if not isinstance(body, dict):
            return "body must be a JSON object"
        missing = [k for k in ("name", "type", "access", "url") if not body.get(k)]
        return f"missing {', '.join(missing)}" if missing else None

    def _create_datasource(self, r: Request) -> tuple[int, Any]:
        why = self._check_datasource(r.body)
        if why:
            return 400, {"message": why}
        body = r.body
        if any(d["name"] == body["name"] for d in self.state.datasources.values()):
            return 409, {"message": "data source with the same name already exists"}
        if body.get("uid") in self.state.datasources:
            return 409, {"message": "data source with the same uid already exists"}
        ds = {**body, "id": self._id(), "version": 1}
        self.state.datasources[body["uid"]] = ds
        return 200, {
            "datasource": ds,
            "id": ds["id"],
            "message": "Datasource added",
            "name": ds["name"],
        }

    def _update_datasource(self, r: Request, uid: str) -> tuple[int, Any]:
        old = self.state.datasources.get(uid)
        if old is None:
            return 404, {"message": "Data source not found"}
        why = self._check_datasource(r.body)
        if why:
            return 400, {"message": why}
        ds = {**r.body, "uid": uid, "id": old["id"], "version": old["version"] + 1}
        self.state.datasources[uid] = ds
        return 200, {
            "datasource": ds,
            "id": ds["id"],
            "message": "Datasource updated",
            "name": ds["name"],
        }

    def _get_folder(self, r: Request, uid: str) -> tuple[int, Any]:
        f = self.state.folders.get(uid)
        return (200, f) if f is not None else (404, {"message": "folder not found"})

    def _create_folder(self, r: Request) -> tuple[int, Any]:
        body = r.body if isinstance(r.body, dict) else {}
        if not body.get("title"):
            return 400, {"message": "folder title cannot be empty"}
        uid = body.get("uid") or f"auto{self.state.next_id}"
        if uid in self.state.folders:
            return 409, {"message": "a folder with the same uid already exists"}
        f = {"id": self._id(), "uid": uid, "title": body["title"], "version": 1}
        self.state.folders[uid] = f
        return 200, f

    def _update_folder(self, r: Request, uid: str) -> tuple[int, Any]:
        f = self.state.folders.get(uid)
        if f is None:
            return 404, {"message": "folder not found"}
        body = r.body if isinstance(r.body, dict) else {}
        if not body.get("overwrite") and body.get("version") != f["version"]:
            return 412, {"message": "the folder has been changed by someone else"}
        f = {**f, "title": body.get("title", f["title"]), "version": f["version"] + 1}
        self.state.folders[uid] = f
        return 200, f

    def _get_dashboard(self, r: Request, uid: str) -> tuple[int, Any]:
        d = self.state.dashboards.get(uid)
        return (200, d) if d is not None else (404, {"message": "Dashboard not found"})

    def _save_dashboard(self, r: Request) -> tuple[int, Any]:
        body = r.body
        if not isinstance(body, dict) or not isinstance(body.get("dashboard"), dict):
            return 400, {"message": "dashboard is required"}
        board = body["dashboard"]
        if not board.get("title"):
            return 400, {"message": "Dashboard title cannot be empty"}
        uid = board.get("uid")
        folder = body.get("folderUid", "")
        if folder and folder not in self.state.folders:
            return 400, {"message": "folder not found"}
        old = self.state.dashboards.get(uid) if uid else None
        if old is not None and not body.get("overwrite"):
            return 412, {
                "status": "version-mismatch",
                "message": "The dashboard has been changed by someone else",
            }
        version = old["dashboard"]["version"] + 1 if old else 1
        board_id = old["dashboard"]["id"] if old else self._id()
        saved = {**board, "id": board_id, "version": version}
        slug = re.sub(r"[^a-z0-9]+", "-", board["title"].lower()).strip("-")
        self.state.dashboards[uid] = {
            "dashboard": saved,
            "meta": {"folderUid": folder, "slug": slug, "version": version},
        }
        return 200, {
            "id": board_id,
            "uid": uid,
            "url": f"/d/{uid}/{slug}",
            "status": "success",
            "version": version,
            "slug": slug,
        }
