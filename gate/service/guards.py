"""Litestar glue for auth: the middleware that resolves the caller (and holds the request's one
database session), CSRF for cookie-authenticated writes, and the role each route needs (:func:`requires`)."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any
from urllib.parse import quote

import anyio
from litestar.connection import ASGIConnection
from litestar.enums import ScopeType
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult
from litestar.types import Receive, Scope, Send
from sqlalchemy.ext.asyncio import AsyncSession

from gate.service.auth import AuthError, Principal, allows, looks_like_jwt, lookup_token
from gate.service.reader import Reader
from gate.service.settings import Role

__all__ = ["COOKIE", "CSRF_HEADER", "TokenAuthMiddleware", "csrf_token", "db", "requires"]

#: HttpOnly, SameSite=Strict cookie the login page sets.
COOKIE = "gate_token"
#: Header a cookie-authenticated API write must carry (the UI's forms carry a ``csrf`` field instead).
CSRF_HEADER = "x-csrf-token"
_ROLE = "gate.role"
_SAFE = frozenset({"GET", "HEAD", "OPTIONS"})
_HINT = "send 'Authorization: Bearer TOKEN' (an API token or a GitHub Actions OIDC token) or log in at /login"


def csrf_token(token: str) -> str:
    """The CSRF token of a session: derived from its secret, which a cross-site page cannot read."""
    return hmac.new(token.encode(), b"gate-csrf", hashlib.sha256).hexdigest()


def db(connection: ASGIConnection[Any, Any, Any, Any]) -> AsyncSession:
    """The request's ORM session: one per request, opened on first use (reads alone never open one)."""
    reader: Reader = connection.app.state.gate.reader
    return reader.session(connection.scope)


def _wants_html(scope: Scope) -> bool:
    headers = dict(scope.get("headers") or [])
    return (
        scope.get("method") == "GET"
        and not scope["path"].startswith("/api/")
        and b"text/html" in headers.get(b"accept", b"")
    )


def _authorization(scope: Scope) -> str:
    # Straight from the ASGI headers (names arrive lower-cased): building Litestar's Headers
    # object for one header was a tenth of an authenticated read's CPU.
    for key, value in scope["headers"]:
        if key == b"authorization":
            return value.decode("latin-1")
    return ""


class TokenAuthMiddleware(AbstractAuthenticationMiddleware):
    """Resolves ``Authorization: Bearer`` or the login cookie to a :class:`Principal`.

    One database session serves the whole request, opened on first use (``db(request)``)
    and closed after it; the token lookup is one of the :class:`Reader`'s statements, on
    that session's connection where it needs one (PostgreSQL), so a request checks out at
    most one connection.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Authenticate, run the handler, close its session; a browser with no login goes to /login."""
        reader: Reader = scope["app"].state.gate.reader
        try:
            try:
                await super().__call__(scope, receive, send)
            finally:
                await reader.close_session(scope)
        except NotAuthorizedException:
            if scope["type"] != ScopeType.HTTP or not _wants_html(scope):
                raise
            target = scope["path"] + ("?" + scope["query_string"].decode() if scope["query_string"] else "")
            location = f"/login?next={quote(target, safe='')}".encode()
            start: Any = {
                "type": "http.response.start",
                "status": 303,
                "headers": [(b"location", location)],
            }
            await send(start)
            body: Any = {"type": "http.response.body", "body": b""}
            await send(body)

    async def authenticate_request(
        self, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> AuthenticationResult:
        """Authenticate or raise 401; a cookie-authenticated API write without the CSRF header is a 403."""
        st = connection.app.state.gate
        header = _authorization(connection.scope)
        via = "header"
        if header:
            scheme, _, value = header.partition(" ")
            if scheme.lower() != "bearer" or not value.strip():
                st.metrics.auth_failures.labels("malformed").inc()
                raise NotAuthorizedException(f"malformed Authorization header; {_HINT}")
            token = value.strip()
        else:
            token, via = connection.cookies.get(COOKIE, ""), "cookie"
        if not token:
            st.metrics.auth_failures.labels("missing").inc()
            raise NotAuthorizedException(f"authentication required; {_HINT}")
        if len(token) > 16384:
            st.metrics.auth_failures.labels("malformed").inc()
            raise NotAuthorizedException("the token is longer than 16384 characters")
        try:
            if looks_like_jwt(token):
                if st.oidc is None:
                    raise AuthError("OIDC tokens are not accepted: this server has no OIDC configuration")
                principal: Principal = await anyio.to_thread.run_sync(st.oidc.verify, token)
            else:
                principal = await lookup_token(st.reader, connection.scope, token)
        except AuthError as e:
            st.metrics.auth_failures.labels("refused").inc()
            raise NotAuthorizedException(str(e)) from e
        if (
            via == "cookie"
            and connection.scope.get("method") not in _SAFE
            and connection.scope["path"].startswith("/api/")
            and not hmac.compare_digest(connection.headers.get(CSRF_HEADER, ""), csrf_token(token))
        ):
            raise PermissionDeniedException(
                f"a write authenticated by the login cookie needs the {CSRF_HEADER} header of its session"
            )
        needed: Role | None = connection.scope["route_handler"].opt.get(_ROLE)
        if needed is not None and not allows(principal.role, needed):
            raise PermissionDeniedException(
                f"{principal.name} has role '{principal.role}'; this needs role '{needed}'"
            )
        return AuthenticationResult(user=principal, auth=(token, via))


def requires(role: Role) -> dict[str, Role]:
    """The role a route or controller needs, as its ``opt``: the middleware lets through callers it allows.

    Not a Litestar guard: Litestar copies the route handler object for every guard it
    runs, which cost a status read about a sixth of its CPU.
    """
    return {_ROLE: role}
