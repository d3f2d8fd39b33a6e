"""The HTTP side of a registry: bounded requests, basic and bearer-token auth, honest errors.

Every request has a connect and a read timeout (``GATE_REGISTRY_TIMEOUT``), at
most five redirects, and every body it reads has a limit: small documents
(probe, token, error text) 64 KiB, manifests and indexes 4 MiB, blobs the size
their descriptor declares. A small body must also arrive within the timeout as a
whole, so a registry dripping one byte a second cannot hold a pull open.

Credentials come from ``GATE_REGISTRY_USERNAME`` / ``GATE_REGISTRY_PASSWORD`` or
a docker config file (``DOCKER_CONFIG`` or ``~/.docker/config.json``); they are
never logged, and error texts echoed by a registry are scrubbed of them.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from gate.errors import GateFailure, InputError, ServerError
from gate.oci._common import _MAX_SMALL_BODY, _json_object, _read_bounded, registry_timeout

__all__ = ["RegistryHttp"]

_LOOPBACK = re.compile(r"^(localhost|127\.\d+\.\d+\.\d+|\[::1\])(:\d+)?$")
_MAX_REDIRECTS = 5
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]{0,2048})"')


def _scrub(text: str) -> str:
    # Registries sometimes echo request headers in error bodies: never show credentials.
    text = re.sub(r"(?i)(authorization|basic|bearer)[\s:=\"]+[A-Za-z0-9+/=._-]+", r"\1 <redacted>", text)
    return "".join(c if c.isprintable() else "?" for c in text)


def _docker_config_auth(host: str) -> tuple[str, str] | None:
    docker_dir = os.environ.get("DOCKER_CONFIG") or os.path.expanduser("~/.docker")
    path = Path(docker_dir) / "config.json"
    if not path.exists():
        return None
    try:
        config = _json_object(_read_bounded(path, 1 << 20), f"docker config {path}")
        auths = config.get("auths")
        entry = auths.get(host) if isinstance(auths, dict) else None
        encoded = entry.get("auth") if isinstance(entry, dict) else None
        if not isinstance(encoded, str):
            return None
        user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (GateFailure, InputError, binascii.Error, UnicodeDecodeError) as e:
        raise InputError(f"docker config {path} is unusable: {getattr(e, 'message', e)}") from None
    return (user, password) if user and password else None


class RegistryHttp:
    """Bounded HTTP to one registry host, authenticating the way its ``/v2/`` challenge asks."""

    def __init__(self, host: str) -> None:
        self.host = host
        plain = bool(_LOOPBACK.match(host)) or os.environ.get("GATE_REGISTRY_PLAIN_HTTP") == "1"
        self.origin = f"{'http' if plain else 'https'}://{host}"
        self.timeout = registry_timeout()
        user = os.environ.get("GATE_REGISTRY_USERNAME")
        password = os.environ.get("GATE_REGISTRY_PASSWORD")
        self._creds = (user, password) if user and password else _docker_config_auth(host)
        self._client = httpx.Client(
            timeout=httpx.Timeout(self.timeout),
            follow_redirects=True,
            max_redirects=_MAX_REDIRECTS,
            trust_env=False,
        )
        self._tokens: dict[str, str] = {}
        self._scheme = ""
        with self.stream("GET", f"{self.origin}/v2/", authenticate=False) as probe:
            self.read_small(probe, _MAX_SMALL_BODY, "the /v2/ probe")
            if probe.status_code == 401:
                self._scheme = probe.headers.get("www-authenticate", "").split(" ", 1)[0].lower()
                if self._scheme == "basic" and self._creds is None:
                    raise InputError(
                        f"registry {host} requires credentials",
                        hint="set GATE_REGISTRY_USERNAME and GATE_REGISTRY_PASSWORD, or a docker config file",
                    )
            elif probe.status_code >= 500:
                raise ServerError(f"registry {host}: the /v2/ probe answered HTTP {probe.status_code}")

    def close(self) -> None:
        """Drop the connection pool."""
        self._client.close()

    def _auth_header(self, scope: str) -> dict[str, str]:
        if self._scheme == "basic" and self._creds:
            raw = f"{self._creds[0]}:{self._creds[1]}".encode()
            return {"Authorization": "Basic " + base64.b64encode(raw).decode()}
        if self._scheme == "bearer" and scope in self._tokens:
            return {"Authorization": "Bearer " + self._tokens[scope]}
        return {}

    def _fetch_token(self, challenge: str, scope: str) -> None:
        params = dict(_CHALLENGE_PARAM.findall(challenge))
        realm = params.get("realm", "")
        if not realm.startswith(("https://", "http://")):
            raise ServerError(
                f"registry {self.host} asked for a token from an unusable realm {realm[:100]!r}"
            )
        query = {k: v for k, v in (("service", params.get("service")), ("scope", scope)) if v}
        auth = httpx.BasicAuth(*self._creds) if self._creds else None
        try:
            request = self._client.build_request("GET", realm, params=query)
            response = self._client.send(request, auth=auth, stream=True)
        except httpx.HTTPError as e:
            raise self._transport_error("GET", "the token endpoint", e) from None
        try:
            body = self.read_small(response, _MAX_SMALL_BODY, "the token response")
        finally:
            response.close()
        if response.status_code in (401, 403):
            raise InputError(
                f"registry {self.host}'s token service refused the credentials",
                hint="check GATE_REGISTRY_USERNAME / GATE_REGISTRY_PASSWORD or the docker config",
            )
        if response.status_code != 200:
            raise ServerError(f"registry {self.host}: token endpoint answered HTTP {response.status_code}")
        doc = _json_object(body, "the token response")
        token = doc.get("token") or doc.get("access_token")
        if not isinstance(token, str) or not token or len(token) > 16384:
            raise ServerError(f"registry {self.host}: the token response holds no usable token")
        self._tokens[scope] = token

    def _transport_error(self, method: str, what: str, e: Exception) -> ServerError:
        if isinstance(e, httpx.TooManyRedirects):
            return ServerError(f"registry {self.host}: {what} redirected more than {_MAX_REDIRECTS} times")
        if isinstance(e, httpx.TimeoutException):
            return ServerError(
                f"registry {self.host}: {method} {what} timed out after {self.timeout:g} s",
                hint="the registry stalled; GATE_REGISTRY_TIMEOUT sets the limit",
            )
        if isinstance(e, httpx.ConnectError):
            return ServerError(f"cannot reach registry {self.host}: {_scrub(str(e))[:200]}")
        return ServerError(
            f"registry {self.host}: {method} {what} failed: {type(e).__name__}: {_scrub(str(e))[:200]}"
        )

    @contextlib.contextmanager
    def stream(
        self,
        method: str,
        url: str,
        *,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
        scope: str = "",
        authenticate: bool = True,
    ) -> Iterator[httpx.Response]:
        """Send one request (re-sent once with credentials after a 401); the body is not read yet."""
        what = url.split("/v2/", 1)[-1].split("?", 1)[0] or "/v2/"
        response = None
        try:
            for attempt in range(2):
                request = self._client.build_request(
                    method, url, content=content, headers={**(headers or {}), **self._auth_header(scope)}
                )
                response = self._client.send(request, stream=True)
                if response.status_code != 401 or not authenticate or attempt == 1:
                    break
                challenge = response.headers.get("www-authenticate", "")
                response.close()
                kind = challenge.split(" ", 1)[0].lower()
                if kind == "bearer":
                    self._scheme = "bearer"
                    self._fetch_token(challenge, scope)
                elif kind == "basic" and self._creds:
                    self._scheme = "basic"
                else:
                    break
            assert response is not None
            if response.status_code == 401 and authenticate:
                raise InputError(
                    f"registry {self.host} refused the credentials ({method} {what})",
                    hint="check GATE_REGISTRY_USERNAME / GATE_REGISTRY_PASSWORD or the docker config",
                )
            yield response
        except httpx.HTTPError as e:
            raise self._transport_error(method, what, e) from None
        finally:
            if response is not None:
                response.close()

    def read_small(self, response: httpx.Response, limit: int, what: str) -> bytes:
        """The whole body, refused past ``limit`` bytes or past the timeout in total."""
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and len(declared) < 20 and int(declared) > limit:
            raise GateFailure(f"registry {self.host}: {what} declares {int(declared)} bytes (limit {limit})")
        deadline = time.monotonic() + self.timeout
        parts: list[bytes] = []
        total = 0
        try:
            for chunk in response.iter_bytes():
                total += len(chunk)
                if total > limit:
                    raise GateFailure(f"registry {self.host}: {what} is over {limit} bytes")
                if time.monotonic() > deadline:
                    raise ServerError(
                        f"registry {self.host}: {what} did not arrive within {self.timeout:g} s",
                        hint="the registry is too slow; GATE_REGISTRY_TIMEOUT sets the limit",
                    )
                parts.append(chunk)
        except httpx.HTTPError as e:
            raise self._transport_error("GET", what, e) from None
        return b"".join(parts)

    def check(self, response: httpx.Response, what: str) -> None:
        """Raise ServerError unless the answer is a success."""
        if response.status_code in (200, 201, 202, 204):
            return
        detail = ""
        with contextlib.suppress(GateFailure, ServerError):
            detail = _scrub(
                self.read_small(response, _MAX_SMALL_BODY, "an error body").decode("utf-8", "replace")
            )[:300]
        raise ServerError(f"registry {self.host}: {what} answered HTTP {response.status_code}: {detail}")


def header(response: httpx.Response, name: str) -> str:
    """A response header, or empty."""
    value: Any = response.headers.get(name, "")
    return str(value)
