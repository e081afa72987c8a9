"""The HTTP API (FastAPI): devices, latest readings, tickets and energy reports."""

from api.app import API_PREFIX, create_app
from api.errors import ApiError

__all__ = ["API_PREFIX", "ApiError", "create_app"]
