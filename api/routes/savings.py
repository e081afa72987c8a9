"""GET /api/v1/reports/savings: verified energy savings against a weather-normalised baseline."""

from __future__ import annotations

from fastapi import APIRouter

from api.context import Context


def router(ctx: Context) -> APIRouter:
    r = APIRouter(tags=["reports"])
    return r
