"""Bearer-token authentication (``Authorization: Bearer <token>``) and roles.

Each token has a name (who holds it, written into ticket events) and a role; roles are ordered
viewer < technician < manager < admin and a route asks for the least role it needs.
"""

# No ``from __future__ import annotations`` here: FastAPI resolves a string annotation in the
# module's globals, where the closure's ``scheme`` in ``Depends(scheme)`` cannot be found.

import hmac
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.errors import ApiError
from config.models import ApiToken

ROLES: tuple[str, ...] = ("viewer", "technician", "manager", "admin")  # least to most
# The name of a token that is not in the config's api.tokens: the one FACMON_API_TOKEN adds
# (or the one the runtime makes up in its place when no token exists at all).
ENV_TOKEN_NAME = "FACMON_API_TOKEN"

# What create_app accepts per token: its role, or (name, role).
TokenSpec = str | tuple[str, str]


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the token's role and name. Tokens themselves are never kept or logged."""

    role: str
    name: str = ENV_TOKEN_NAME

    def has(self, role: str) -> bool:
        """True when this principal's role is ``role`` or above it."""
        return ROLES.index(self.role) >= ROLES.index(role)


def named_tokens(
    tokens: Mapping[str, TokenSpec], configured: Iterable[ApiToken] = ()
) -> dict[str, tuple[str, str]]:
    """``token -> (name, role)``. A bare role takes its name from the config's ``api.tokens``
    entry with the same token, else :data:`ENV_TOKEN_NAME`. Unknown roles are refused here,
    at start-up, rather than silently granting or denying later."""
    names = {t.token.get_secret_value(): t.name for t in configured}
    out: dict[str, tuple[str, str]] = {}
    for token, spec in tokens.items():
        name, role = spec if isinstance(spec, tuple) else (names.get(token, ENV_TOKEN_NAME), spec)
        if role not in ROLES:
            raise ValueError(f"token {name!r}: unknown role {role!r} (one of {', '.join(ROLES)})")
        out[token] = (name, role)
    return out


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": "Bearer"})


def bearer_auth(
    tokens: Mapping[str, TokenSpec],
) -> Callable[..., Coroutine[Any, Any, Principal]]:
    """A dependency that admits requests carrying one of ``tokens`` (token -> role, or
    token -> (name, role)) and leaves the :class:`Principal` on ``request.state.principal``
    for :func:`current_principal`."""
    known = [(t.encode("utf-8"), spec) for t, spec in named_tokens(tokens).items() if t]
    scheme = HTTPBearer(
        auto_error=False,
        description="A token from api.tokens in the site config, or FACMON_API_TOKEN",
    )

    async def require_token(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(scheme)],
    ) -> Principal:
        if credentials is None:
            raise _unauthorized("missing bearer token (Authorization: Bearer <token>)")
        given = credentials.credentials.encode("utf-8")
        found: tuple[str, str] | None = None
        # Compare against every token, in constant time, so timing reveals neither a token
        # nor which one came closest.
        for token, spec in known:
            if hmac.compare_digest(token, given) and found is None:
                found = spec
        if found is None:
            raise _unauthorized("unknown bearer token")
        principal = Principal(role=found[1], name=found[0])
        request.state.principal = principal
        return principal

    return require_token


def current_principal(request: Request) -> Principal:
    """The caller, for routes under the authenticated router (``bearer_auth`` ran first)."""
    principal = getattr(request.state, "principal", None)
    if not isinstance(principal, Principal):
        # A route mounted outside the authenticated router: refuse rather than guess.
        raise _unauthorized("missing bearer token (Authorization: Bearer <token>)")
    return principal


def require_role(principal: Principal, role: str, doing: str) -> None:
    """403 in the common error shape unless ``principal`` is ``role`` or above; ``doing``
    completes "... cannot <doing>" in the message."""
    if not principal.has(role):
        raise ApiError(
            403,
            "forbidden",
            f"the {principal.role} token {principal.name!r} cannot {doing}; "
            f"that needs the {role} role or above",
        )
