"""GET /api/v1/reports/monthly: the monthly management report as JSON, CSV, HTML or PDF."""

from __future__ import annotations

from fastapi import APIRouter

from api.context import Context


def router(ctx: Context) -> APIRouter:
    r = APIRouter(tags=["reports"])
    return r
