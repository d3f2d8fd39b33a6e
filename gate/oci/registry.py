"""A registry store: the OCI distribution API over bounded HTTP (see gate.oci.http)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gate.errors import GateFailure, ServerError
from gate.oci._common import (
    _MAX_ENTRIES,
    _MAX_MANIFEST_BYTES,
    _MONOLITHIC_MAX,
    INDEX_MEDIA_TYPE,
    MANIFEST_MEDIA_TYPE,
    _json_object,
    _read_bounded,
    _referrers_tag,
)
from gate.oci.http import RegistryHttp, header
from gate.oci.store import Store, _update_referrers_index, referrer_list


class RegistryStore(Store):
    """An OCI distribution registry (``oci://HOST[:PORT]/REPO``).

    Plain HTTP is used for loopback hosts and when ``GATE_REGISTRY_PLAIN_HTTP=1``.
    The referrers API is asked first; a registry without it (docker-registry 2.8)
    is read and written through the ``sha256-<hex>`` referrers tag.
    """

    def __init__(self, host: str, repository: str) -> None:
        self.host = host
        self.repository = repository
        self.bytes_uploaded = 0
        self.http = RegistryHttp(host)
        self.base = f"{self.http.origin}/v2/{repository}"
        self._pull = f"repository:{repository}:pull"
        self._push = f"repository:{repository}:pull,push"

    def has_blob(self, digest: str) -> bool:
        with self.http.stream("HEAD", f"{self.base}/blobs/{digest}", scope=self._pull) as r:
            return r.status_code == 200

    def _location(self, r: Any) -> str:
        loc = header(r, "location")
        if not loc:
            raise ServerError(f"registry {self.host} started an upload without a Location")
        if loc.startswith("/"):
            loc = self.http.origin + loc
        return loc

    @staticmethod
    def _with_digest(url: str, digest: str) -> str:
        return url + ("&" if "?" in url else "?") + f"digest={digest}"

    def _send(self, method: str, url: str, what: str, **kw: Any) -> Any:
        with self.http.stream(method, url, scope=self._push, **kw) as r:
            self.http.check(r, what)
            return r

    def put_blob(
        self, digest: str, size: int, *, path: Path | None = None, data: bytes | None = None
    ) -> None:
        r = self._send("POST", f"{self.base}/blobs/uploads/", "starting a blob upload")
        url = self._location(r)
        if data is not None or size <= _MONOLITHIC_MAX:
            body = data if data is not None else _read_file(path)
            headers = {"Content-Type": "application/octet-stream", "Content-Length": str(len(body))}
            self._send(
                "PUT",
                self._with_digest(url, digest),
                f"uploading blob {digest}",
                content=body,
                headers=headers,
            )
            self.bytes_uploaded += len(body)
            return
        assert path is not None
        start = 0
        with open(path, "rb") as fh:
            while chunk := fh.read(16 << 20):
                end = start + len(chunk) - 1
                headers = {
                    "Content-Type": "application/octet-stream",
                    "Content-Range": f"{start}-{end}",
                    "Content-Length": str(len(chunk)),
                }
                r = self._send(
                    "PATCH", url, f"uploading a chunk of blob {digest}", content=chunk, headers=headers
                )
                url = self._location(r)
                start = end + 1
                self.bytes_uploaded += len(chunk)
        self._send(
            "PUT", self._with_digest(url, digest), f"finishing blob {digest}", headers={"Content-Length": "0"}
        )

    @contextlib.contextmanager
    def open_blob(self, digest: str) -> Iterator[Iterator[bytes]]:
        with self.http.stream("GET", f"{self.base}/blobs/{digest}", scope=self._pull) as r:
            if r.status_code == 404:
                raise GateFailure(f"registry {self.host} has no blob {digest} (partial artifact)")
            self.http.check(r, f"fetching blob {digest}")
            yield r.iter_bytes()

    def put_manifest(self, raw: bytes, media_type: str, reference: str) -> dict[str, str]:
        r = self._send(
            "PUT",
            f"{self.base}/manifests/{reference}",
            f"putting manifest {reference}",
            content=raw,
            headers={"Content-Type": media_type},
        )
        return {k.lower(): v for k, v in r.headers.items()}

    def get_manifest(self, reference: str) -> bytes | None:
        accept = ", ".join([MANIFEST_MEDIA_TYPE, INDEX_MEDIA_TYPE])
        url = f"{self.base}/manifests/{reference}"
        with self.http.stream("GET", url, headers={"Accept": accept}, scope=self._pull) as r:
            if r.status_code == 404:
                return None
            self.http.check(r, f"fetching manifest {reference}")
            return self.http.read_small(r, _MAX_MANIFEST_BYTES, f"manifest {reference}")

    def referrers(self, digest: str) -> list[dict[str, Any]]:
        url = f"{self.base}/referrers/{digest}"
        with self.http.stream("GET", url, headers={"Accept": INDEX_MEDIA_TYPE}, scope=self._pull) as r:
            api = r.status_code == 200 and header(r, "content-type").startswith(INDEX_MEDIA_TYPE)
            if api:
                raw = self.http.read_small(r, _MAX_MANIFEST_BYTES, f"the referrers index of {digest}")
        if api:
            return referrer_list(_json_object(raw, "referrers index"), "referrers index")
        # No referrers API (docker-registry 2.8): the referrers tag schema.
        tagged = self.get_manifest(_referrers_tag(digest))
        if tagged is None:
            return []
        return referrer_list(_json_object(tagged, "referrers tag index"), "referrers tag index")

    def attach_referrer(self, subject: str, descriptor: dict[str, Any], headers: dict[str, str]) -> str:
        if headers.get("oci-subject") == subject:
            return "api"
        _update_referrers_index(self, subject, descriptor)
        return "tag-schema"

    def tags(self) -> list[str]:
        with self.http.stream("GET", f"{self.base}/tags/list", scope=self._pull) as r:
            if r.status_code == 404:
                return []
            self.http.check(r, "listing tags")
            raw = self.http.read_small(r, _MAX_MANIFEST_BYTES, "tag list")
        tags = _json_object(raw, "tag list").get("tags") or []
        return [str(t) for t in tags[:_MAX_ENTRIES]] if isinstance(tags, list) else []


def _read_file(path: Path | None) -> bytes:
    assert path is not None
    return _read_bounded(path, _MONOLITHIC_MAX)
