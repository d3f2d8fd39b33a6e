"""Constants and small helpers shared by the OCI modules (media types, digests, bounded JSON)."""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gate.errors import GateFailure

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


def _digest_bytes(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _json_object(raw: bytes | None, what: str) -> dict[str, Any]:
    try:
        obj = json.loads(raw or b"")
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise GateFailure(f"{what} is not valid JSON: {e}") from e
    if not isinstance(obj, dict):
        raise GateFailure(f"{what} is not a JSON object")
    return obj


def _read_bounded(path: Path, max_bytes: int) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as fh:
        raw = fh.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise GateFailure(f"{path} is over {max_bytes} bytes")
    return raw


def _referrers_tag(digest: str) -> str:
    return digest.replace(":", "-")
