"""GET /api/v1/reports/water: water use, minimum night flow, leak episodes and unaccounted water."""

from __future__ import annotations

from fastapi import APIRouter

from api.context import Context


def router(ctx: Context) -> APIRouter:
    r = APIRouter(tags=["reports"])
    return r
