"""``facmon status``: ask a running facmon how each of its components is doing.

It reads ``GET /health`` of the process (the rows facmon.health computes there) and prints one
line per component, or the whole body with ``--json``. Exit status: 0 when every component is
up (or not configured), 1 when anything is down, degraded or still starting, or the process
does not answer.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

import httpx
import yaml

from config.models import Api
from facmon.health import DOWN, UP, healthy

DEFAULT_TOKEN_ENV = "FACMON_API_TOKEN"


def url_from_config(path: Path) -> str:
    """The API address of a site config's ``api`` block, read without resolving the config's
    ``${ENV}`` secrets (the shell running ``facmon status`` need not hold them)."""
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    api = data.get("api") if isinstance(data, dict) else None
    api = api if isinstance(api, dict) else {}
    host = str(api.get("host") or Api.model_fields["host"].default)
    port = int(api.get("port") or Api.model_fields["port"].default)
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def fetch(url: str, token: str | None, timeout: float = 10.0) -> tuple[dict[str, Any], float]:
    """The ``/health`` body and how long it took (seconds). Raises httpx.HTTPError."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    started = time.monotonic()
    r = httpx.get(url.rstrip("/") + "/health", headers=headers, timeout=timeout)
    elapsed = time.monotonic() - started
    r.raise_for_status()
    body = r.json()
    if not isinstance(body, dict):
        raise httpx.DecodingError(f"unexpected /health body: {body!r:.200}")
    return body, elapsed


def rows_of(body: Mapping[str, Any], url: str, elapsed: float) -> list[dict[str, str]]:
    rows = [
        {"component": "api", "state": UP, "detail": f"{url} answered in {elapsed * 1000:.0f} ms"}
    ]
    found = body.get("components")
    if isinstance(found, list):
        rows += [r for r in found if isinstance(r, dict)]
    else:
        rows.append(
            {
                "component": "pipeline",
                "state": DOWN,
                "detail": "no component figures in /health (an older facmon?)",
            }
        )
    return rows


def render(rows: list[dict[str, str]]) -> str:
    head = ("COMPONENT", "STATE", "DETAIL")
    w0 = max(len(head[0]), *(len(r["component"]) for r in rows))
    w1 = max(len(head[1]), *(len(r["state"]) for r in rows))
    lines = [f"{head[0]:<{w0}}  {head[1]:<{w1}}  {head[2]}"]
    lines += [f"{r['component']:<{w0}}  {r['state']:<{w1}}  {r['detail']}" for r in rows]
    return "\n".join(lines)


def run_status(url: str, token: str | None, as_json: bool, out: TextIO) -> int:
    try:
        body, elapsed = fetch(url, token)
    except (httpx.HTTPError, ValueError) as e:
        rows = [{"component": "api", "state": DOWN, "detail": f"{url}: {e}"}]
        if as_json:
            print(json.dumps({"status": DOWN, "components": rows}, indent=2), file=out)
        else:
            print(render(rows), file=out)
        return 1
    rows = rows_of(body, url, elapsed)
    ok = healthy(rows)
    if as_json:
        print(json.dumps({**body, "components": rows}, indent=2, ensure_ascii=False), file=out)
    else:
        print(render(rows), file=out)
        if not ok:
            bad = [r["component"] for r in rows if not healthy([r])]
            print(f"\nnot healthy: {', '.join(bad)}", file=out)
    return 0 if ok else 1
