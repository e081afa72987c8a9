"""GET /api/v1/reports/maintenance: repair KPIs from the ticket database."""

from __future__ import annotations

from fastapi import APIRouter

from api.context import Context


def router(ctx: Context) -> APIRouter:
    r = APIRouter(tags=["reports"])
    return r
