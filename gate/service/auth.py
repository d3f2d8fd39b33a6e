"""Who is calling: API tokens (stored hashed) and GitHub Actions OIDC tokens, mapped to roles.

Roles: ``read`` sees everything; ``submit`` and ``approve`` also do what their
name says; ``admin`` does all of it and manages tokens. A submitter cannot
approve (separation of duties) unless it is an admin.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import hashlib
import json
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import jwt
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from gate.errors import InputError
from gate.service.models import ApiToken, utcnow
from gate.service.reader import Prepared, Reader, as_utc
from gate.service.settings import ROLES, OIDCSettings, Role

__all__ = [
    "AuthError",
    "OIDCVerifier",
    "Principal",
    "allows",
    "hash_token",
    "issue_token",
    "lookup_token",
]

_TOKEN_PREFIX = "gate_"
_JWKS_MAX_BYTES = 1 << 20
_JWKS_TTL_S = 300.0


class AuthError(Exception):
    """A credential was missing, malformed, expired, revoked or not trusted."""


@dataclass(frozen=True)
class Principal:
    """An authenticated caller."""

    name: str
    role: Role
    #: "token" or "oidc"
    kind: str
    claims: dict[str, Any] | None = None


def allows(role: str, needed: Role) -> bool:
    """Whether ``role`` may do what ``needed`` stands for."""
    if role == "admin":
        return True
    if needed == "read":
        return role in ROLES
    return role == needed


def hash_token(token: str) -> str:
    """SHA-256 of a token (tokens are 256-bit random, so a plain hash is enough: no brute force)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def issue_token(session: Session, name: str, role: str, *, expires_in_s: float | None = None) -> str:
    """Create an API token named ``name`` with ``role``; return the secret (shown once, stored hashed)."""
    if role not in ROLES:
        raise InputError(f"unknown role {role!r}", hint=f"one of {', '.join(ROLES)}")
    if not name or len(name) > 200:
        raise InputError("a token needs a name of 1-200 characters")
    if session.scalar(select(ApiToken).where(ApiToken.name == name)) is not None:
        raise InputError(f"a token named {name!r} already exists", hint="revoke it or choose another name")
    token = _TOKEN_PREFIX + secrets.token_urlsafe(32)
    expires = utcnow() + dt.timedelta(seconds=expires_in_s) if expires_in_s else None
    session.add(ApiToken(name=name, role=role, token_sha256=hash_token(token), expires_at=expires))
    return token


_BY_HASH = Prepared(
    lambda _: select(ApiToken.name, ApiToken.role, ApiToken.revoked, ApiToken.expires_at).where(
        ApiToken.token_sha256 == bindparam("sha256")
    ),
    # Cached on SQLite until the next commit anywhere (gate.service.read_cache): a revocation still
    # applies to the very next request; expiry is checked below on every request.
    cached=True,
)


async def lookup_token(reader: Reader, scope: Any, token: str) -> Principal:
    """The principal of an API token, or :class:`AuthError` (a revocation or expiry applies at once)."""
    rows = await reader.rows(scope, _BY_HASH, {"sha256": hash_token(token)})
    if not rows:
        raise AuthError("unknown API token")
    name, role, revoked, stamp = rows[0]
    expires_at = as_utc(stamp)
    if revoked:
        raise AuthError(f"API token {name!r} was revoked")
    if expires_at is not None and expires_at <= utcnow():
        raise AuthError(f"API token {name!r} expired at {expires_at.isoformat()}")
    return Principal(name=f"token:{name}", role=role, kind="token")


def looks_like_jwt(token: str) -> bool:
    """JWTs are three base64url parts; gate's own tokens start with ``gate_``."""
    return not token.startswith(_TOKEN_PREFIX) and token.count(".") == 2


class OIDCVerifier:
    """Checks OIDC JWTs against the issuer's JWKS and maps their claims to a role."""

    def __init__(self, settings: OIDCSettings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = 0.0

    def _fetch_jwks(self) -> dict[str, Any]:
        url = self.settings.jwks_url
        parsed = urlparse(url)
        try:
            if parsed.scheme in ("http", "https"):
                with httpx.Client(timeout=10.0) as client:
                    r = client.get(url)
                    r.raise_for_status()
                    raw = r.content[: _JWKS_MAX_BYTES + 1]
            else:
                path = Path(parsed.path if parsed.scheme == "file" else url)
                with path.open("rb") as fh:
                    raw = fh.read(_JWKS_MAX_BYTES + 1)
        except (OSError, httpx.HTTPError) as e:
            raise AuthError(f"cannot fetch the issuer's JWKS from {url}: {e}") from e
        if len(raw) > _JWKS_MAX_BYTES:
            raise AuthError(f"JWKS at {url} is larger than {_JWKS_MAX_BYTES} bytes")
        try:
            data = json.loads(raw)
        except ValueError as e:
            raise AuthError(f"JWKS at {url} is not JSON") from e
        if not isinstance(data, dict):
            raise AuthError(f"JWKS at {url} is not a JSON object")
        return data

    def _key(self, kid: str | None) -> jwt.PyJWK:
        with self._lock:
            stale = time.monotonic() - self._fetched_at > _JWKS_TTL_S
            # An unknown kid refreshes once: the issuer rotates keys.
            if stale or (kid is not None and kid not in self._keys):
                try:
                    jwks = jwt.PyJWKSet.from_dict(self._fetch_jwks())
                except jwt.PyJWTError as e:
                    raise AuthError(f"the issuer's JWKS is unusable: {e}") from e
                self._keys = {k.key_id or "": k for k in jwks.keys}
                self._fetched_at = time.monotonic()
            if kid is None:
                if len(self._keys) == 1:
                    return next(iter(self._keys.values()))
                raise AuthError("OIDC token has no 'kid' header and the JWKS has several keys")
            key = self._keys.get(kid)
            if key is None:
                raise AuthError(f"OIDC token is signed with key {kid!r}, which is not in the issuer's JWKS")
            return key

    def verify(self, token: str) -> Principal:
        """Verify signature, expiry, issuer and audience; map repository/ref to a role."""
        s = self.settings
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as e:
            raise AuthError(f"malformed OIDC token: {e}") from e
        key = self._key(header.get("kid"))
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key,
                algorithms=list(s.algorithms),
                audience=s.audience,
                issuer=s.issuer,
                leeway=s.leeway_s,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError as e:
            raise AuthError("OIDC token expired") from e
        except jwt.InvalidAudienceError as e:
            raise AuthError(f"OIDC token audience is not {s.audience!r}") from e
        except jwt.InvalidIssuerError as e:
            raise AuthError(f"OIDC token issuer is not {s.issuer!r}") from e
        except jwt.InvalidSignatureError as e:
            raise AuthError("OIDC token signature does not verify against the issuer's JWKS") from e
        except jwt.PyJWTError as e:
            raise AuthError(f"OIDC token refused: {e}") from e
        repo = str(claims.get("repository", ""))
        ref = str(claims.get("ref", ""))
        for rule in s.rules:
            if fnmatch.fnmatchcase(repo, rule.repository) and fnmatch.fnmatchcase(ref, rule.ref):
                return Principal(name=f"oidc:{repo}@{ref}", role=rule.role, kind="oidc", claims=claims)
        raise AuthError(f"no OIDC rule grants a role to repository {repo!r} at ref {ref!r}")
