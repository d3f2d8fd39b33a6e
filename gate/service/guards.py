"""Litestar glue for auth: the middleware that resolves the caller, and role guards."""

from __future__ import annotations

from typing import Any

import anyio
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult
from litestar.types import Guard

from gate.service.auth import AuthError, Principal, allows, looks_like_jwt, lookup_token
from gate.service.settings import Role

__all__ = ["COOKIE", "TokenAuthMiddleware", "requires"]

#: Cookie a browser may carry a (read-only) token in: the web UI needs no login page.
COOKIE = "gate_token"
_HINT = (
    "send 'Authorization: Bearer TOKEN' (an API token or a GitHub Actions OIDC token) or a gate_token cookie"
)


class TokenAuthMiddleware(AbstractAuthenticationMiddleware):
    """Resolves ``Authorization: Bearer`` or the ``gate_token`` cookie to a :class:`Principal`."""

    async def authenticate_request(
        self, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> AuthenticationResult:
        """Authenticate or raise 401."""
        st = connection.app.state.gate
        header = connection.headers.get("authorization", "")
        token = ""
        if header:
            scheme, _, value = header.partition(" ")
            if scheme.lower() != "bearer" or not value.strip():
                st.metrics.auth_failures.labels("malformed").inc()
                raise NotAuthorizedException(f"malformed Authorization header; {_HINT}")
            token = value.strip()
        else:
            token = connection.cookies.get(COOKIE, "")
        if not token:
            st.metrics.auth_failures.labels("missing").inc()
            raise NotAuthorizedException(f"authentication required; {_HINT}")
        try:
            if looks_like_jwt(token):
                if st.oidc is None:
                    raise AuthError("OIDC tokens are not accepted: this server has no OIDC configuration")
                principal: Principal = await anyio.to_thread.run_sync(st.oidc.verify, token)
            else:
                async with st.sessions() as s:
                    principal = await lookup_token(s, token)
        except AuthError as e:
            st.metrics.auth_failures.labels("refused").inc()
            raise NotAuthorizedException(str(e)) from e
        return AuthenticationResult(user=principal, auth=token)


def requires(role: Role) -> Guard:
    """A guard letting through callers whose role allows ``role``."""

    def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        p: Principal = connection.user
        if not allows(p.role, role):
            raise PermissionDeniedException(f"{p.name} has role '{p.role}'; this needs role '{role}'")

    guard.__name__ = f"requires_{role}"
    return guard
