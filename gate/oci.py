"""Publish and pull bundles as CNCF ModelPack OCI artifacts, with the signature as a referrer.

Two stores with the same semantics: a registry (``oci://HOST[:PORT]/REPO:TAG``,
spoken to through oras-py's HTTP transport and auth backends) and an on-disk
OCI image layout (``oci-layout://PATH:TAG``, no server needed).

Publishing is ordered so that a crash or kill at any point leaves no tag naming
an unsigned or partial artifact:

1. every blob (config, one raw layer per file) is uploaded, skipping those the
   store already has (HEAD first);
2. the manifest is put by digest (no tag);
3. the signature is put as a referrer manifest whose ``subject`` is the bundle
   manifest (OCI referrers API, or the ``sha256-<hex>`` referrers tag schema where
   the registry lacks the API);
4. only then is the tag moved to the manifest digest.

Re-running is safe: blobs and manifests are content-addressed, and the manifest
bytes are deterministic for a given bundle.

Example::

    result = publish(Path("bundle"), parse_ref("oci-layout://./registry:v1"))
    pulled = pull(parse_ref("oci-layout://./registry:v1"), Path("staging"))
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gate.bundle import (
    MAX_FILE_BYTES,
    MAX_FILES,
    SIGNATURE,
    VERDICT,
    BundleFile,
    check_relpath,
    file_kind,
    list_files,
    read_json,
)
from gate.console import atomic_write_text
from gate.errors import GateFailure, InputError, ServerError
from gate.signing import SIGNATURE_MEDIA_TYPE

__all__ = [
    "ARTIFACT_TYPE",
    "MEDIA_TYPES",
    "LayoutStore",
    "OciRef",
    "PublishResult",
    "PulledBundle",
    "RegistryStore",
    "Store",
    "build_manifest",
    "open_store",
    "parse_ref",
    "publish",
    "pull",
]

ARTIFACT_TYPE = "application/vnd.cncf.model.manifest.v1+json"
CONFIG_MEDIA_TYPE = "application/vnd.cncf.model.config.v1+json"
MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
EMPTY_MEDIA_TYPE = "application/vnd.oci.empty.v1+json"
FILEPATH_ANNOTATION = "org.cncf.model.filepath"
REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"
#: ModelPack raw (untarred) layer media types by bundle file kind.
MEDIA_TYPES: dict[str, str] = {
    "weight": "application/vnd.cncf.model.weight.v1.raw",
    "weight-config": "application/vnd.cncf.model.weight.config.v1.raw",
    "doc": "application/vnd.cncf.model.doc.v1.raw",
}
_EMPTY = b"{}"
_EMPTY_DIGEST = "sha256:" + hashlib.sha256(_EMPTY).hexdigest()
_MAX_MANIFEST_BYTES = 4 << 20
_MAX_SIGNATURE_BYTES = 8 << 20
_CHUNK = 1 << 20
#: Blobs above this are uploaded in chunks (bounded memory); smaller ones in one PUT.
_MONOLITHIC_MAX = 64 << 20
_DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
_REPO_RE = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$")

Event = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class OciRef:
    """A parsed reference: ``oci://HOST/REPO[:TAG][@DIGEST]`` or ``oci-layout://PATH[:TAG][@DIGEST]``."""

    kind: str  # "registry" or "layout"
    location: str  # HOST[:PORT] or the layout directory
    repository: str  # empty for a layout
    tag: str | None
    digest: str | None

    def __str__(self) -> str:
        base = (
            f"oci://{self.location}/{self.repository}"
            if self.kind == "registry"
            else f"oci-layout://{self.location}"
        )
        return base + (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")

    def with_digest(self, digest: str) -> OciRef:
        """The same repository, pinned to ``digest`` (no tag)."""
        return OciRef(self.kind, self.location, self.repository, None, digest)


def is_oci_ref(text: str) -> bool:
    """Whether ``text`` is an ``oci://`` or ``oci-layout://`` reference (not a local directory)."""
    return text.startswith(("oci://", "oci-layout://"))


def _split_tag_digest(rest: str) -> tuple[str, str | None, str | None]:
    digest = None
    if "@" in rest:
        rest, digest = rest.rsplit("@", 1)
        if not _DIGEST_RE.match(digest):
            raise InputError(f"bad digest {digest!r}", hint="expected sha256:<64 hex digits>")
    tag = None
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1 :]
        if not _TAG_RE.match(tag):
            raise InputError(f"bad tag {tag!r}", hint="letters, digits, '_', '.', '-' (at most 128)")
    return rest, tag, digest


def parse_ref(text: str) -> OciRef:
    """Parse an OCI reference; InputError names what is wrong."""
    if text.startswith("oci-layout://"):
        path, tag, digest = _split_tag_digest(text[len("oci-layout://") :])
        if not path:
            raise InputError(f"reference {text!r} names no directory")
        return OciRef("layout", path, "", tag, digest)
    if text.startswith("oci://"):
        rest = text[len("oci://") :]
        if "/" not in rest:
            raise InputError(f"reference {text!r} names no repository", hint="oci://HOST[:PORT]/REPO:TAG")
        host, rest = rest.split("/", 1)
        repo, tag, digest = _split_tag_digest(rest)
        if not _REPO_RE.match(repo):
            raise InputError(f"bad repository name {repo!r} in {text!r}", hint="lowercase path components")
        if not host:
            raise InputError(f"reference {text!r} names no registry host")
        return OciRef("registry", host, repo, tag, digest)
    raise InputError(
        f"not an OCI reference: {text!r}", hint="oci://HOST[:PORT]/REPO:TAG or oci-layout://PATH:TAG"
    )


def _digest_bytes(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


# --------------------------------------------------------------------------- stores


class Store(ABC):
    """A content-addressed place for blobs and manifests, with tags and referrers."""

    #: Bytes of blob data sent by this store object (for benchmarks and reports).
    bytes_uploaded: int = 0

    @abstractmethod
    def has_blob(self, digest: str) -> bool:
        """Whether the store already holds blob ``digest``."""

    @abstractmethod
    def put_blob(
        self, digest: str, size: int, *, path: Path | None = None, data: bytes | None = None
    ) -> None:
        """Store a blob from a file or bytes (the store verifies the digest)."""

    @abstractmethod
    def open_blob(self, digest: str) -> contextlib.AbstractContextManager[Iterator[bytes]]:
        """Stream blob ``digest`` (chunks); the caller checks digest and size."""

    @abstractmethod
    def put_manifest(self, raw: bytes, media_type: str, reference: str) -> dict[str, str]:
        """Put manifest bytes under ``reference`` (a digest or a tag); return response headers."""

    @abstractmethod
    def get_manifest(self, reference: str) -> bytes | None:
        """The raw manifest under ``reference`` (digest or tag), or None if absent."""

    @abstractmethod
    def referrers(self, digest: str) -> list[dict[str, Any]]:
        """Descriptors of manifests whose ``subject`` is ``digest``."""

    @abstractmethod
    def attach_referrer(self, subject: str, descriptor: dict[str, Any], headers: dict[str, str]) -> str:
        """Make a just-pushed referrer discoverable; return how ("api" or "tag-schema" or "index")."""

    def tags(self) -> list[str]:
        """Every tag in the repository (for inspection and tests)."""
        return []

    def fetch_blob_bytes(self, digest: str, size: int, max_bytes: int) -> bytes:
        """Read a small blob fully, checking size and digest."""
        if size > max_bytes:
            raise GateFailure(f"blob {digest} is {size} bytes, over the {max_bytes} byte limit")
        h = hashlib.sha256()
        parts: list[bytes] = []
        total = 0
        with self.open_blob(digest) as chunks:
            for chunk in chunks:
                total += len(chunk)
                if total > size:
                    raise GateFailure(f"blob {digest} is larger than its descriptor says ({size} bytes)")
                h.update(chunk)
                parts.append(chunk)
        if total != size or "sha256:" + h.hexdigest() != digest:
            raise GateFailure(f"blob {digest} does not match its digest (content was altered)")
        return b"".join(parts)

    def fetch_blob_to(self, digest: str, size: int, dest: Path) -> None:
        """Stream a blob into ``dest`` (created exclusively), checking size and digest."""
        h = hashlib.sha256()
        total = 0
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "wb") as fh, self.open_blob(digest) as chunks:
            for chunk in chunks:
                total += len(chunk)
                if total > size:
                    raise GateFailure(f"blob {digest} is larger than its descriptor says ({size} bytes)")
                h.update(chunk)
                fh.write(chunk)
        if total != size or "sha256:" + h.hexdigest() != digest:
            raise GateFailure(
                f"layer {dest.name} ({digest}) does not match its digest: the blob was altered",
                hint="the registry content was tampered with or corrupted; do not use this artifact",
            )


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


def _update_referrers_index(store: Store, subject: str, descriptor: dict[str, Any]) -> None:
    tag = _referrers_tag(subject)
    raw = store.get_manifest(tag)
    index = _json_object(raw, "referrers tag index") if raw else {}
    manifests = [m for m in index.get("manifests") or [] if m.get("digest") != descriptor["digest"]]
    manifests.append(descriptor)
    new = {"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": manifests}
    store.put_manifest(_canonical(new), INDEX_MEDIA_TYPE, tag)


def _referrers_tag(digest: str) -> str:
    return digest.replace(":", "-")


def _scrub(text: str) -> str:
    # Registries sometimes echo request headers in error bodies: never show credentials.
    return re.sub(r"(?i)(authorization|basic|bearer)[\s:=\"]+[A-Za-z0-9+/=._-]+", r"\1 <redacted>", text)


def _path(url: str) -> str:
    return url.split("/v2/", 1)[-1].split("?", 1)[0]


def _read_file(path: Path | None) -> bytes:
    assert path is not None
    with open(path, "rb") as fh:
        return fh.read()


def _json_object(raw: bytes | None, what: str) -> dict[str, Any]:
    try:
        obj = json.loads(raw or b"")
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise GateFailure(f"{what} is not valid JSON: {e}") from e
    if not isinstance(obj, dict):
        raise GateFailure(f"{what} is not a JSON object")
    return obj


class LayoutStore(Store):
    """An OCI image layout directory (``oci-layout``, ``index.json``, ``blobs/sha256/``).

    Blobs are written to a temporary name and renamed into place; ``index.json``
    is replaced atomically under a lock, so readers never see a half-written tag.
    """

    def __init__(self, root: Path, *, create: bool) -> None:
        self.root = root
        self.bytes_uploaded = 0
        layout = root / "oci-layout"
        if not layout.exists():
            if not create:
                raise InputError(f"{root} is not an OCI image layout (no oci-layout file)")
            if root.exists() and any(root.iterdir()):
                raise InputError(
                    f"{root} exists and is not an OCI image layout", hint="choose an empty directory"
                )
            (root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
            atomic_write_text(layout, json.dumps({"imageLayoutVersion": "1.0.0"}) + "\n")
        if root.is_symlink() or layout.is_symlink():
            raise InputError(f"{root} is a symlink; refusing to use it as a layout")
        if not (root / "index.json").exists():
            with self._locked():
                if not (root / "index.json").exists():
                    self._write_index({"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": []})

    def _blob_path(self, digest: str) -> Path:
        if not _DIGEST_RE.match(digest):
            raise GateFailure(f"bad digest {digest!r}")
        return self.root / "blobs" / "sha256" / digest.split(":", 1)[1]

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.root / ".gate-lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _read_index(self) -> dict[str, Any]:
        return _json_object(_read_bounded(self.root / "index.json", _MAX_MANIFEST_BYTES), "index.json")

    def _write_index(self, index: dict[str, Any]) -> None:
        atomic_write_text(self.root / "index.json", json.dumps(index, indent=2, sort_keys=True) + "\n")

    def has_blob(self, digest: str) -> bool:
        p = self._blob_path(digest)
        return p.is_file() and not p.is_symlink()

    def put_blob(
        self, digest: str, size: int, *, path: Path | None = None, data: bytes | None = None
    ) -> None:
        target = self._blob_path(digest)
        fd, tmp = tempfile.mkstemp(prefix=".upload-", dir=target.parent)
        try:
            h = hashlib.sha256()
            with os.fdopen(fd, "wb") as out:
                if data is not None:
                    h.update(data)
                    out.write(data)
                else:
                    assert path is not None
                    with open(path, "rb") as src:
                        while chunk := src.read(_CHUNK):
                            h.update(chunk)
                            out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            if "sha256:" + h.hexdigest() != digest:
                raise GateFailure(f"blob for {digest} changed while it was being published")
            os.replace(tmp, target)
            self.bytes_uploaded += size
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @contextlib.contextmanager
    def open_blob(self, digest: str) -> Iterator[Iterator[bytes]]:
        p = self._blob_path(digest)
        try:
            fd = os.open(p, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            raise GateFailure(f"layout {self.root} has no blob {digest} (partial artifact)") from None
        except OSError as e:
            raise GateFailure(f"cannot read blob {digest}: {e.strerror}") from None
        with os.fdopen(fd, "rb") as fh:

            def chunks() -> Iterator[bytes]:
                while chunk := fh.read(_CHUNK):
                    yield chunk

            yield chunks()

    def put_manifest(self, raw: bytes, media_type: str, reference: str) -> dict[str, str]:
        digest = _digest_bytes(raw)
        if not self.has_blob(digest):
            self.put_blob(digest, len(raw), data=raw)
        obj = _json_object(raw, "manifest")
        desc: dict[str, Any] = {"mediaType": media_type, "digest": digest, "size": len(raw)}
        if obj.get("artifactType"):
            desc["artifactType"] = obj["artifactType"]
        with self._locked():
            index = self._read_index()
            manifests = list(index.get("manifests") or [])
            if _DIGEST_RE.match(reference):
                if not any(m.get("digest") == digest for m in manifests):
                    manifests.append(desc)
            else:
                # Moving a tag: drop it from whatever it named, then name the new manifest.
                kept = []
                for m in manifests:
                    ann = dict(m.get("annotations") or {})
                    if ann.get(REF_NAME_ANNOTATION) == reference:
                        continue
                    kept.append(m)
                kept.append({**desc, "annotations": {REF_NAME_ANNOTATION: reference}})
                manifests = kept
            index["manifests"] = manifests
            self._write_index(index)
        return {}

    def get_manifest(self, reference: str) -> bytes | None:
        digest: str | None = reference if _DIGEST_RE.match(reference) else None
        if digest is None:
            for m in self._read_index().get("manifests") or []:
                if (m.get("annotations") or {}).get(REF_NAME_ANNOTATION) == reference:
                    digest = str(m.get("digest"))
            if digest is None:
                return None
        if not self.has_blob(digest):
            return None
        return _read_bounded(self._blob_path(digest), _MAX_MANIFEST_BYTES)

    def referrers(self, digest: str) -> list[dict[str, Any]]:
        found = []
        seen: set[str] = set()
        for m in self._read_index().get("manifests") or []:
            d = str(m.get("digest"))
            if d in seen or m.get("artifactType") != SIGNATURE_MEDIA_TYPE or not self.has_blob(d):
                continue
            seen.add(d)
            man = _json_object(_read_bounded(self._blob_path(d), _MAX_MANIFEST_BYTES), "manifest")
            if (man.get("subject") or {}).get("digest") == digest:
                found.append({k: v for k, v in m.items() if k != "annotations"})
        return found

    def attach_referrer(self, subject: str, descriptor: dict[str, Any], headers: dict[str, str]) -> str:
        # put_manifest already listed it in index.json, where referrers() finds it.
        return "index"

    def tags(self) -> list[str]:
        names = []
        for m in self._read_index().get("manifests") or []:
            name = (m.get("annotations") or {}).get(REF_NAME_ANNOTATION)
            if name:
                names.append(str(name))
        return names


def _read_bounded(path: Path, max_bytes: int) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as fh:
        raw = fh.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise GateFailure(f"{path} is over {max_bytes} bytes")
    return raw


def open_store(ref: OciRef, *, create: bool = False) -> Store:
    """The store a reference points at (a layout is created on publish when missing)."""
    if ref.kind == "layout":
        return LayoutStore(Path(ref.location), create=create)
    return RegistryStore(ref.location, ref.repository)


# --------------------------------------------------------------------------- manifests


def _config(files: list[BundleFile], verdict: dict[str, Any]) -> dict[str, Any]:
    contract = verdict.get("contract") or {}
    base = verdict.get("base_model") or {}
    return {
        "descriptor": {
            "name": str(verdict.get("run", {}).get("name") or contract.get("name") or "adapter"),
            "createdAt": verdict.get("created_at"),
            "family": str(base.get("name") or ""),
            "version": str(verdict.get("adapter_digest", ""))[:19],
        },
        "config": {"format": "safetensors", "architecture": str(base.get("architecture") or "lora-adapter")},
        "modelfs": {"type": "layers", "diffIds": ["sha256:" + f.sha256 for f in files]},
    }


def build_manifest(files: list[BundleFile], verdict: dict[str, Any]) -> tuple[bytes, bytes]:
    """The ModelPack config and manifest bytes for a bundle (deterministic for the same bundle)."""
    config = _canonical(_config(files, verdict))
    layers = [
        {
            "mediaType": MEDIA_TYPES[file_kind(f.path)],
            "digest": "sha256:" + f.sha256,
            "size": f.size,
            "annotations": {FILEPATH_ANNOTATION: f.path},
        }
        for f in files
    ]
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "artifactType": ARTIFACT_TYPE,
        "config": {"mediaType": CONFIG_MEDIA_TYPE, "digest": _digest_bytes(config), "size": len(config)},
        "layers": layers,
        "annotations": {"org.opencontainers.image.created": str(verdict.get("created_at") or "")},
    }
    return config, _canonical(manifest)


def _signature_manifest(sig: bytes, subject_digest: str, subject_size: int) -> bytes:
    return _canonical(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA_TYPE,
            "artifactType": SIGNATURE_MEDIA_TYPE,
            "config": {"mediaType": EMPTY_MEDIA_TYPE, "digest": _EMPTY_DIGEST, "size": len(_EMPTY)},
            "layers": [{"mediaType": SIGNATURE_MEDIA_TYPE, "digest": _digest_bytes(sig), "size": len(sig)}],
            "subject": {"mediaType": MANIFEST_MEDIA_TYPE, "digest": subject_digest, "size": subject_size},
        }
    )


# --------------------------------------------------------------------------- publish


@dataclass(frozen=True)
class PublishResult:
    """Where a bundle went: the pinned reference, digests and how much was uploaded."""

    ref: str
    digest: str
    signature_digest: str
    referrer_via: str
    blobs_total: int
    blobs_uploaded: int
    bytes_uploaded: int
    tag: str | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (no credentials: references hold none)."""
        return dict(self.__dict__)


def publish(bundle: Path, ref: OciRef, *, on_event: Event | None = None) -> PublishResult:
    """Publish a signed bundle to ``ref`` by digest, attach its signature, then move the tag.

    The bundle must hold its signature. Each step emits an event
    (``publish.blob``, ``publish.manifest``, ``publish.referrer``, ``publish.tag``).
    """
    emit = on_event or (lambda _e: None)
    sig_path = bundle / SIGNATURE
    if not sig_path.is_file() or sig_path.is_symlink():
        raise InputError(
            f"bundle {bundle} is not signed: refusing to publish it", hint="gate release signs first"
        )
    if ref.digest:
        raise InputError(f"publish to a tag, not a digest: {ref}")
    files = list_files(bundle)
    verdict = read_json(bundle / VERDICT)
    if not isinstance(verdict, dict):
        raise InputError(f"{bundle / VERDICT} is not a verdict")
    sig = _read_bounded(sig_path, _MAX_SIGNATURE_BYTES)
    config, manifest = build_manifest(files, verdict)
    manifest_digest = _digest_bytes(manifest)
    store = open_store(ref, create=True)

    blobs: list[tuple[str, int, Path | None, bytes | None, str]] = [
        (_digest_bytes(config), len(config), None, config, "config")
    ]
    blobs += [("sha256:" + f.sha256, f.size, bundle / f.path, None, f.path) for f in files]
    blobs += [
        (_EMPTY_DIGEST, len(_EMPTY), None, _EMPTY, "signature config"),
        (_digest_bytes(sig), len(sig), None, sig, "signature"),
    ]
    uploaded = 0
    for i, (digest, size, path, data, name) in enumerate(blobs, 1):
        present = store.has_blob(digest)
        if not present:
            store.put_blob(digest, size, path=path, data=data)
            uploaded += 1
        emit(
            {
                "event": "publish.blob",
                "index": i,
                "total": len(blobs),
                "path": name,
                "digest": digest,
                "size": size,
                "uploaded": not present,
            }
        )

    store.put_manifest(manifest, MANIFEST_MEDIA_TYPE, manifest_digest)
    emit({"event": "publish.manifest", "digest": manifest_digest})

    sig_manifest = _signature_manifest(sig, manifest_digest, len(manifest))
    sig_digest = _digest_bytes(sig_manifest)
    headers = store.put_manifest(sig_manifest, MANIFEST_MEDIA_TYPE, sig_digest)
    descriptor = {
        "mediaType": MANIFEST_MEDIA_TYPE,
        "digest": sig_digest,
        "size": len(sig_manifest),
        "artifactType": SIGNATURE_MEDIA_TYPE,
    }
    via = store.attach_referrer(manifest_digest, descriptor, headers)
    if not any(d.get("digest") == sig_digest for d in store.referrers(manifest_digest)):
        raise ServerError(
            f"the signature referrer of {manifest_digest} is not discoverable after attaching it"
        )
    emit({"event": "publish.referrer", "digest": sig_digest, "subject": manifest_digest, "via": via})

    if ref.tag:
        store.put_manifest(manifest, MANIFEST_MEDIA_TYPE, ref.tag)
        emit({"event": "publish.tag", "tag": ref.tag, "digest": manifest_digest})
    return PublishResult(
        ref=str(ref.with_digest(manifest_digest)),
        digest=manifest_digest,
        signature_digest=sig_digest,
        referrer_via=via,
        blobs_total=len(blobs),
        blobs_uploaded=uploaded,
        bytes_uploaded=store.bytes_uploaded,
        tag=ref.tag,
    )


# --------------------------------------------------------------------------- pull


@dataclass(frozen=True)
class PulledBundle:
    """A bundle fetched by digest into ``root``: its layers and the candidate signatures."""

    root: Path
    ref: str
    digest: str
    layers: dict[str, str]  # path -> sha256 hex
    signatures: list[bytes] = field(default_factory=list)
    signature_problems: list[str] = field(default_factory=list)


def _resolve(store: Store, ref: OciRef) -> tuple[str, bytes]:
    reference = ref.digest or ref.tag
    if not reference:
        raise InputError(f"reference {ref} names neither a tag nor a digest")
    raw = store.get_manifest(reference)
    if raw is None:
        raise GateFailure(f"{ref} does not exist", hint="check the tag or digest")
    digest = _digest_bytes(raw)
    if ref.digest and digest != ref.digest:
        raise GateFailure(
            f"manifest for {ref.digest} has digest {digest}: the store returned altered content"
        )
    return digest, raw


def _layers(manifest: dict[str, Any]) -> list[tuple[str, str, int]]:
    if manifest.get("artifactType") != ARTIFACT_TYPE:
        raise GateFailure(
            f"artifact type is {manifest.get('artifactType')!r}, not a gate bundle ({ARTIFACT_TYPE})"
        )
    layers = manifest.get("layers")
    if not isinstance(layers, list) or not layers:
        raise GateFailure("manifest has no layers")
    if len(layers) > MAX_FILES:
        raise GateFailure(f"manifest has {len(layers)} layers, over the limit of {MAX_FILES}")
    out: list[tuple[str, str, int]] = []
    seen: set[str] = set()
    for layer in layers:
        ann = layer.get("annotations") or {}
        path = ann.get(FILEPATH_ANNOTATION)
        digest = layer.get("digest")
        size = layer.get("size")
        if not isinstance(path, str):
            raise GateFailure(f"layer {digest} carries no {FILEPATH_ANNOTATION} annotation")
        try:
            check_relpath(path)
        except InputError as e:
            raise GateFailure(
                f"refusing layer path that could leave the output directory: {e.message}"
            ) from None
        if path == SIGNATURE:
            raise GateFailure(f"a layer claims to be the signature file {SIGNATURE}")
        lowered = path.lower()
        if lowered in seen or any(lowered.startswith(s + "/") or s.startswith(lowered + "/") for s in seen):
            raise GateFailure(f"layer path {path!r} collides with another layer")
        seen.add(lowered)
        if not isinstance(digest, str) or not _DIGEST_RE.match(digest):
            raise GateFailure(f"layer {path!r} has a bad digest {digest!r}")
        if not isinstance(size, int) or size < 0 or size > MAX_FILE_BYTES:
            raise GateFailure(f"layer {path!r} has a bad size {size!r}")
        out.append((path, digest, size))
    return out


def pull(ref: OciRef, dest: Path, *, on_event: Event | None = None) -> PulledBundle:
    """Fetch the bundle ``ref`` names into the new directory ``dest``, by digest, checking every blob.

    Layer paths are checked before anything is written; each blob's size and
    sha256 are checked while it streams. The signature referrers are fetched too
    (verified against their digests) but not yet trusted: see gate.verify.
    """
    emit = on_event or (lambda _e: None)
    store = open_store(ref)
    digest, raw = _resolve(store, ref)
    manifest = _json_object(raw, "manifest")
    layers = _layers(manifest)
    dest.mkdir(parents=True, exist_ok=False)
    for i, (path, layer_digest, size) in enumerate(layers, 1):
        store.fetch_blob_to(layer_digest, size, dest / path)
        emit({"event": "pull.blob", "index": i, "total": len(layers), "path": path, "size": size})
    signatures: list[bytes] = []
    problems: list[str] = []
    for d in store.referrers(digest):
        if d.get("artifactType") not in (None, SIGNATURE_MEDIA_TYPE):
            continue
        sd = str(d.get("digest"))
        try:
            sraw = store.get_manifest(sd)
            if sraw is None or _digest_bytes(sraw) != sd:
                problems.append(f"signature manifest {sd} is missing or altered")
                continue
            sman = _json_object(sraw, "signature manifest")
            if (sman.get("subject") or {}).get("digest") != digest or sman.get(
                "artifactType"
            ) != SIGNATURE_MEDIA_TYPE:
                problems.append(f"referrer {sd} is not a signature of {digest}")
                continue
            (layer,) = sman.get("layers") or [None]
            signatures.append(
                store.fetch_blob_bytes(str(layer["digest"]), int(layer["size"]), _MAX_SIGNATURE_BYTES)
            )
        except (GateFailure, ValueError, TypeError, KeyError) as e:
            problems.append(f"signature referrer {sd}: {getattr(e, 'message', e)}")
    return PulledBundle(
        root=dest,
        ref=str(ref.with_digest(digest)),
        digest=digest,
        layers={p: d.split(":", 1)[1] for p, d, _ in layers},
        signatures=signatures,
        signature_problems=problems,
    )
