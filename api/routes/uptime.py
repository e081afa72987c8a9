"""GET /api/v1/reports/uptime: time-weighted availability of elevators and other assets."""

from __future__ import annotations

from fastapi import APIRouter

from api.context import Context


def router(ctx: Context) -> APIRouter:
    r = APIRouter(tags=["reports"])
    return r
