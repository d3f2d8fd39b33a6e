"""A registry store (OCI distribution API) through oras-py's transport and auth backends."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gate.errors import GateFailure, InputError, ServerError
from gate.oci._common import (
    _CHUNK,
    _MAX_MANIFEST_BYTES,
    _MONOLITHIC_MAX,
    INDEX_MEDIA_TYPE,
    MANIFEST_MEDIA_TYPE,
    _json_object,
    _referrers_tag,
)
from gate.oci.store import Store, _update_referrers_index

_LOOPBACK = re.compile(r"^(localhost|127\.\d+\.\d+\.\d+|\[::1\])(:\d+)?$")


class RegistryStore(Store):
    """An OCI distribution registry, through oras-py's transport and auth backends.

    Credentials: ``GATE_REGISTRY_USERNAME`` / ``GATE_REGISTRY_PASSWORD`` or a docker
    config file (``DOCKER_CONFIG`` or ``~/.docker/config.json``). They are never
    logged or written anywhere. Plain HTTP is used for loopback hosts and when
    ``GATE_REGISTRY_PLAIN_HTTP=1``.
    """

    def __init__(self, host: str, repository: str) -> None:
        import oras.provider
        import requests

        self.host = host
        self.repository = repository
        plain = bool(_LOOPBACK.match(host)) or os.environ.get("GATE_REGISTRY_PLAIN_HTTP") == "1"
        self.base = f"{'http' if plain else 'https'}://{host}/v2/{repository}"
        self.bytes_uploaded = 0
        # Probe once without credentials: fail fast on a dead registry (oras retries
        # connection errors for minutes) and learn which challenge it speaks.
        try:
            probe = requests.get(f"{'http' if plain else 'https'}://{host}/v2/", timeout=15)
        except requests.RequestException as e:
            raise ServerError(f"cannot reach registry {host}: {type(e).__name__}") from None
        challenge = probe.headers.get("Www-Authenticate", "")
        backend = "basic" if challenge.lower().startswith("basic") else "token"
        self._basic = backend == "basic"
        self.reg = oras.provider.Registry(hostname=host, insecure=plain, auth_backend=backend)
        user = os.environ.get("GATE_REGISTRY_USERNAME")
        password = os.environ.get("GATE_REGISTRY_PASSWORD")
        if user and password:
            self.reg.auth.set_basic_auth(user, password)
        else:
            import oras.container

            docker_dir = os.environ.get("DOCKER_CONFIG") or os.path.expanduser("~/.docker")
            config = Path(docker_dir) / "config.json"
            if config.is_file():
                container = oras.container.Container(f"{host}/{repository}", registry=host)
                with contextlib.suppress(Exception):
                    self.reg.auth.load_configs(container, configs=[str(config)])
        # Token registries may allow anonymous pulls (oras asks for an anonymous token); basic ones do not.
        if self._basic and probe.status_code == 401 and not getattr(self.reg.auth, "_basic_auth", None):
            raise InputError(
                f"registry {host} requires credentials",
                hint="set GATE_REGISTRY_USERNAME and GATE_REGISTRY_PASSWORD, or a docker config file",
            )

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = dict(extra or {})
        if self._basic and getattr(self.reg.auth, "_basic_auth", None):
            headers.update(self.reg.auth.get_auth_header())
        return headers

    def _request(
        self,
        method: str,
        url: str,
        *,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
        stream: bool = False,
    ) -> Any:
        try:
            response = self.reg.do_request(
                url, method, data=data, headers=self._headers(headers), stream=stream
            )
            if response.status_code == 401 and not self._basic and getattr(self.reg.auth, "token", None):
                # A bearer token is scoped (pull vs push): drop it so oras asks for one with this scope.
                self.reg.auth.token = None
                response = self.reg.do_request(
                    url, method, data=data, headers=self._headers(headers), stream=stream
                )
        except Exception as e:  # oras wraps connection errors in ValueError after retries
            raise ServerError(
                f"registry {self.host}: {method} failed: {type(e).__name__}: {_scrub(str(e))}"
            ) from None
        if response.status_code == 401:
            raise InputError(
                f"registry {self.host} refused the credentials ({method} {_path(url)})",
                hint="check GATE_REGISTRY_USERNAME / GATE_REGISTRY_PASSWORD or the docker config",
            )
        return response

    def _check(self, response: Any, what: str) -> None:
        if response.status_code not in (200, 201, 202, 204):
            detail = ""
            with contextlib.suppress(Exception):
                detail = _scrub(response.text[:300])
            raise ServerError(f"registry {self.host}: {what} answered HTTP {response.status_code}: {detail}")

    def has_blob(self, digest: str) -> bool:
        r = self._request("HEAD", f"{self.base}/blobs/{digest}")
        return bool(r.status_code == 200)

    def _location(self, r: Any) -> str:
        loc = str(r.headers.get("Location", ""))
        if not loc:
            raise ServerError(f"registry {self.host} started an upload without a Location")
        if loc.startswith("/"):
            loc = self.base.split("/v2/")[0] + loc
        return loc

    @staticmethod
    def _with_digest(url: str, digest: str) -> str:
        return url + ("&" if "?" in url else "?") + f"digest={digest}"

    def put_blob(
        self, digest: str, size: int, *, path: Path | None = None, data: bytes | None = None
    ) -> None:
        r = self._request("POST", f"{self.base}/blobs/uploads/")
        self._check(r, "starting a blob upload")
        url = self._location(r)
        if data is not None or size <= _MONOLITHIC_MAX:
            body = data if data is not None else _read_file(path)
            r = self._request(
                "PUT",
                self._with_digest(url, digest),
                data=body,
                headers={"Content-Type": "application/octet-stream", "Content-Length": str(len(body))},
            )
            self._check(r, f"uploading blob {digest}")
            self.bytes_uploaded += len(body)
            return
        assert path is not None
        start = 0
        with open(path, "rb") as fh:
            while chunk := fh.read(16 << 20):
                end = start + len(chunk) - 1
                r = self._request(
                    "PATCH",
                    url,
                    data=chunk,
                    headers={
                        "Content-Type": "application/octet-stream",
                        "Content-Range": f"{start}-{end}",
                        "Content-Length": str(len(chunk)),
                    },
                )
                self._check(r, f"uploading a chunk of blob {digest}")
                url = self._location(r)
                start = end + 1
                self.bytes_uploaded += len(chunk)
        r = self._request("PUT", self._with_digest(url, digest), headers={"Content-Length": "0"})
        self._check(r, f"finishing blob {digest}")

    @contextlib.contextmanager
    def open_blob(self, digest: str) -> Iterator[Iterator[bytes]]:
        r = self._request("GET", f"{self.base}/blobs/{digest}", stream=True)
        try:
            if r.status_code == 404:
                raise GateFailure(f"registry {self.host} has no blob {digest} (partial artifact)")
            self._check(r, f"fetching blob {digest}")
            yield r.iter_content(chunk_size=_CHUNK)
        finally:
            r.close()

    def put_manifest(self, raw: bytes, media_type: str, reference: str) -> dict[str, str]:
        r = self._request(
            "PUT", f"{self.base}/manifests/{reference}", data=raw, headers={"Content-Type": media_type}
        )
        self._check(r, f"putting manifest {reference}")
        return {k.lower(): v for k, v in r.headers.items()}

    def get_manifest(self, reference: str) -> bytes | None:
        accept = ", ".join([MANIFEST_MEDIA_TYPE, INDEX_MEDIA_TYPE])
        r = self._request(
            "GET", f"{self.base}/manifests/{reference}", headers={"Accept": accept}, stream=True
        )
        try:
            if r.status_code == 404:
                return None
            self._check(r, f"fetching manifest {reference}")
            raw = r.raw.read(_MAX_MANIFEST_BYTES + 1, decode_content=True)
        finally:
            r.close()
        if len(raw) > _MAX_MANIFEST_BYTES:
            raise GateFailure(f"manifest {reference} is over {_MAX_MANIFEST_BYTES} bytes")
        return bytes(raw)

    def referrers(self, digest: str) -> list[dict[str, Any]]:
        r = self._request("GET", f"{self.base}/referrers/{digest}", headers={"Accept": INDEX_MEDIA_TYPE})
        if r.status_code == 200 and r.headers.get("Content-Type", "").startswith(INDEX_MEDIA_TYPE):
            return list(_json_object(r.content, "referrers index").get("manifests") or [])
        # No referrers API (docker-registry 2.8): the referrers tag schema.
        raw = self.get_manifest(_referrers_tag(digest))
        if raw is None:
            return []
        return list(_json_object(raw, "referrers tag index").get("manifests") or [])

    def attach_referrer(self, subject: str, descriptor: dict[str, Any], headers: dict[str, str]) -> str:
        if headers.get("oci-subject") == subject:
            return "api"
        _update_referrers_index(self, subject, descriptor)
        return "tag-schema"

    def tags(self) -> list[str]:
        r = self._request("GET", f"{self.base}/tags/list")
        if r.status_code == 404:
            return []
        self._check(r, "listing tags")
        return list(_json_object(r.content, "tag list").get("tags") or [])


def _scrub(text: str) -> str:
    # Registries sometimes echo request headers in error bodies: never show credentials.
    return re.sub(r"(?i)(authorization|basic|bearer)[\s:=\"]+[A-Za-z0-9+/=._-]+", r"\1 <redacted>", text)


def _path(url: str) -> str:
    return url.split("/v2/", 1)[-1].split("?", 1)[0]


def _read_file(path: Path | None) -> bytes:
    assert path is not None
    with open(path, "rb") as fh:
        return fh.read()
