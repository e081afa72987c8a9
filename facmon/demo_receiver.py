"""The demo's stand-in for the technicians' phones: a webhook endpoint on loopback that prints
every page facmon delivers to it.

It is a real HTTP server, so the demo's pages travel the same way as in production (outbox,
signed webhook POST, retries); only the phone at the end is replaced by a line on the console.
"""

from __future__ import annotations

import json
import logging
import threading
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from zoneinfo import ZoneInfo

log = logging.getLogger(__name__)

_KIND = {
    "page": "PAGE",
    "escalation": "ESCALATION",
    "reminder": "REMINDER",
    "resolved": "RESOLVED",
}


class DemoReceiver:
    """Listens on ``127.0.0.1:<any port>``; :attr:`url` is what the demo's webhook channel
    posts to. Each delivery is printed once (a retried one carries the same key)."""

    def __init__(self, tz: ZoneInfo) -> None:
        self._tz = tz
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        self.received: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    outer._show(json.loads(body))
                    code = 200
                except (ValueError, KeyError, TypeError):
                    code = 400
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/pages"
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="demo-receiver", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _show(self, doc: dict[str, Any]) -> None:
        key = str(doc["idempotency_key"])
        with self._lock:
            if key in self._seen:
                return
            self._seen.add(key)
            self.received.append(doc)
        t = datetime.fromisoformat(doc["at"]).astimezone(self._tz)
        who = doc["recipient"]["name"]
        kind = _KIND.get(doc["kind"], str(doc["kind"]).upper())
        ticket = doc.get("ticket") or {}
        print(
            f"  [{t:%H:%M:%S}] {kind} -> {who}: {ticket.get('number', '')} "
            f"{ticket.get('priority', '')} {doc.get('subject', '')}  {doc.get('link', '')}",
            flush=True,
        )
