"""The web console at /console: plain HTML pages, one small script, no build step.

The pages carry no data: the script reads the bearer token from ``sessionStorage`` (entered on
the sign-in page) and calls the JSON API with it, so the pages themselves need no
authentication and the API's role checks are the only ones. Labels come in zh-CN and en
(``i18n.py``); the site's language is the default and a button switches.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from api.console.i18n import LABELS
from api.context import Context

CONSOLE_PREFIX = "/console"
_HERE = Path(__file__).parent
_STATIC = _HERE / "static"

# The pages run only our own script: nothing inline, nothing from elsewhere. blob: frames and
# links show report bodies that are HTML or PDF; such a frame inherits this policy, hence the
# inline styles (a report page styles itself; scripts stay out, and the frame is sandboxed).
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
        "frame-src blob:; object-src 'none'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _json_for_script(value: Any) -> Markup:
    # Inside <script type="application/json"> only "</" could end the element early.
    text = json.dumps(value, ensure_ascii=False).replace("<", "\\u003c")
    return Markup(text)


def install_console(app: FastAPI, ctx: Context, api_prefix: str) -> None:
    """Serve the console pages under /console and their script and style under
    /console/static (left out of the OpenAPI schema)."""
    env = Environment(
        loader=FileSystemLoader(_HERE / "templates"),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    # A content hash in the URL: a new release is never served an old script from cache.
    versions = {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()[:12]
        for p in _STATIC.iterdir()
        if p.is_file()
    }
    lang = ctx.config.site.language
    site_name = ctx.config.site.name

    def static(name: str) -> str:
        return f"{CONSOLE_PREFIX}/static/{name}?v={versions[name]}"

    def render(page: str, **extra: Any) -> HTMLResponse:
        labels = LABELS[lang]
        config = {
            "api": api_prefix,
            "console": CONSOLE_PREFIX,
            "lang": lang,
            "tz": ctx.config.site.timezone,
            "site": site_name,
            "page": page,
            "labels": LABELS,
            # Limits the server enforces, so the forms offer only what it will accept.
            "maxShelveS": int(ctx.config.tickets.max_shelve.total_seconds()),
            "maxSilenceS": int(ctx.config.tickets.max_silence.total_seconds()),
            **extra,
        }
        html = env.get_template(f"{page}.html").render(
            lang=lang,
            page=page,
            site_name=site_name,
            prefix=CONSOLE_PREFIX,
            t=lambda key: labels[key],
            static=static,
            config_json=_json_for_script(config),
        )
        return HTMLResponse(html, headers=_HEADERS)

    r = APIRouter(prefix=CONSOLE_PREFIX, include_in_schema=False)

    @r.get("")
    @r.get("/")
    def home() -> RedirectResponse:
        return RedirectResponse(f"{CONSOLE_PREFIX}/tickets", status_code=307)

    @r.get("/login", response_class=HTMLResponse)
    def login() -> HTMLResponse:
        return render("login")

    @r.get("/tickets", response_class=HTMLResponse)
    def tickets() -> HTMLResponse:
        return render("tickets")

    @r.get("/tickets/{ticket_id}", response_class=HTMLResponse)
    def ticket(ticket_id: Annotated[int, PathParam(ge=1, le=2**31 - 1)]) -> HTMLResponse:
        return render("ticket", ticketId=ticket_id)

    @r.get("/alerts", response_class=HTMLResponse)
    def alerts() -> HTMLResponse:
        return render("alerts")

    @r.get("/silences", response_class=HTMLResponse)
    def silences() -> HTMLResponse:
        return render("silences")

    @r.get("/devices", response_class=HTMLResponse)
    def devices() -> HTMLResponse:
        return render("devices")

    @r.get("/reports", response_class=HTMLResponse)
    def reports() -> HTMLResponse:
        return render("reports")

    app.include_router(r)
    app.mount(f"{CONSOLE_PREFIX}/static", StaticFiles(directory=_STATIC), name="console-static")
