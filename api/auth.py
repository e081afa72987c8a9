"""Bearer-token authentication: ``Authorization: Bearer <token>``, tokens mapped to roles."""

# No ``from __future__ import annotations`` here: FastAPI resolves a string annotation in the
# module's globals, where the closure's ``scheme`` in ``Depends(scheme)`` cannot be found.

import hmac
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.errors import ApiError


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling. Only the role is known: tokens themselves are never kept or logged."""

    role: str


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": "Bearer"})


def bearer_auth(
    tokens: Mapping[str, str],
) -> Callable[..., Coroutine[Any, Any, Principal]]:
    """A dependency that admits requests carrying one of ``tokens`` (token -> role)."""
    known = [(t.encode("utf-8"), role) for t, role in tokens.items() if t]
    scheme = HTTPBearer(
        auto_error=False,
        description="A token from api.tokens in the site config, or FACMON_API_TOKEN",
    )

    async def require_token(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(scheme)],
    ) -> Principal:
        if credentials is None:
            raise _unauthorized("missing bearer token (Authorization: Bearer <token>)")
        given = credentials.credentials.encode("utf-8")
        role: str | None = None
        # Compare against every token, in constant time, so timing reveals neither a token
        # nor which one came closest.
        for token, r in known:
            if hmac.compare_digest(token, given) and role is None:
                role = r
        if role is None:
            raise _unauthorized("unknown bearer token")
        return Principal(role)

    return require_token
