"""Constants and small helpers shared by the OCI modules (media types, digests, bounded JSON)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gate.errors import GateFailure, InputError

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
_DEFAULT_TIMEOUT = 30.0
#: Bodies that are not blobs: the /v2/ probe, error texts, token responses.
_MAX_SMALL_BODY = 64 << 10
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


#: Nesting, size and count bounds of every JSON document gate reads from a store.
_MAX_JSON_DEPTH = 32
_MAX_INT_DIGITS = 20
_MAX_ENTRIES = 1024


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for k, v in pairs:
        if k in obj:
            raise ValueError(f"duplicate key {k[:64]!r}")
        obj[k] = v
    return obj


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > _MAX_INT_DIGITS:
        raise ValueError(f"integer of {len(text)} digits")
    return int(text)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _depth_ok(raw: bytes) -> bool:
    # Counted on the bytes before parsing, so a deep document costs no recursion at all.
    depth = 0
    in_string = escaped = False
    for b in raw:
        if in_string:
            if escaped:
                escaped = False
            elif b == 0x5C:
                escaped = True
            elif b == 0x22:
                in_string = False
        elif b == 0x22:
            in_string = True
        elif b in (0x5B, 0x7B):
            depth += 1
            if depth > _MAX_JSON_DEPTH:
                return False
        elif b in (0x5D, 0x7D):
            depth -= 1
    return True


def _json_object(raw: bytes | None, what: str) -> dict[str, Any]:
    """Parse a JSON object strictly: bounded depth and integers, no duplicate keys, no NaN."""
    data = raw or b""
    if not _depth_ok(data):
        raise GateFailure(f"{what} is nested deeper than {_MAX_JSON_DEPTH} levels")
    try:
        obj = json.loads(
            data,
            object_pairs_hook=_no_duplicates,
            parse_int=_bounded_int,
            parse_constant=_no_constant,
        )
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise GateFailure(f"{what} is not valid JSON: {str(e)[:200]}") from None
    if not isinstance(obj, dict):
        raise GateFailure(f"{what} is not a JSON object")
    return obj


def _field(obj: dict[str, Any], key: str, kind: type | tuple[type, ...], what: str) -> Any:
    """``obj[key]`` if it has the JSON type ``kind``, else a GateFailure naming the field."""
    value = obj.get(key)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        name = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        got = "missing" if key not in obj else type(value).__name__
        raise GateFailure(f"{what}: field {key!r} must be {name}, got {got}")
    return value


def _descriptor(obj: Any, what: str, *, max_size: int) -> tuple[str, int]:
    """(digest, size) of an OCI descriptor, checked for form and bounds."""
    if not isinstance(obj, dict):
        raise GateFailure(f"{what} is not a descriptor object")
    digest = _field(obj, "digest", str, what)
    if not _DIGEST_RE.match(digest):
        raise GateFailure(f"{what} has a malformed digest {digest[:80]!r} (expected sha256:<64 hex>)")
    size = _field(obj, "size", int, what)
    if size < 0 or size > max_size:
        raise GateFailure(f"{what} declares a size of {size} bytes (limit {max_size})")
    return digest, size


def _mismatch(what: str, expected: str, got: str) -> str:
    """A digest mismatch in full hex, the way an operator compares them."""
    return f"{what} does not match its digest: expected {expected}, got {got}"


def _read_bounded(path: Path, max_bytes: int) -> bytes:
    """Read a regular file (never a link, FIFO or device) of at most ``max_bytes``."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        raise InputError(f"{path} does not exist") from None
    except OSError as e:
        raise InputError(f"cannot open {path}: {e.strerror} (symlinks are refused)") from None
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise InputError(f"{path} is not a regular file")
        if st.st_size > max_bytes:
            raise GateFailure(f"{path} is {st.st_size} bytes, over the {max_bytes} byte limit")
        raw = fh.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise GateFailure(f"{path} is over {max_bytes} bytes")
    return raw


def registry_timeout() -> float:
    """Seconds each registry connect and read may take (``GATE_REGISTRY_TIMEOUT``, default 30)."""
    text = os.environ.get("GATE_REGISTRY_TIMEOUT", "")
    if not text:
        return _DEFAULT_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 3600:
        raise InputError(f"GATE_REGISTRY_TIMEOUT={text!r} is not a number of seconds in (0, 3600]")
    return value


def _referrers_tag(digest: str) -> str:
    return digest.replace(":", "-")
