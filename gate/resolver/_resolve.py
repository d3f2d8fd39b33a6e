"""Resolving one adapter request: allowed name, not revoked, pulled verify-first, gated for this base.

``resolve(config, "NAME:VERSION")`` (or ``"NAME@sha256:..."``) returns a
:class:`Resolution`: either the path of a verified bundle in the content-addressed
cache (named by its manifest digest, re-verified on every resolution) or a
refusal that names the check that failed and the digest. Nothing is handed on
that did not pass every check; a cache entry that no longer verifies is removed.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from gate.envs import file_lock
from gate.errors import Error, GateFailure
from gate.resolver._config import NAME, ResolverConfig, Signer
from gate.signing import TrustPolicy

__all__ = ["Check", "Resolution", "parse_request", "resolve"]

Check = Literal[
    "ok", "request", "not-allowed", "registry", "revoked", "signature", "verdict", "other-base", "cache"
]
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


@dataclass(frozen=True)
class Resolution:
    """The outcome of one request: a verified path, or the refusal and why."""

    name: str
    ok: bool
    check: Check
    reason: str
    digest: str | None = None
    path: str | None = None
    seconds: float = 0.0
    cached: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (what ``python -m gate.resolver`` prints)."""
        return asdict(self)


class _Refused(Exception):
    def __init__(self, check: Check, reason: str, digest: str | None = None) -> None:
        super().__init__(reason)
        self.check = check
        self.reason = reason
        self.digest = digest


def parse_request(requested: str) -> tuple[str, str | None, str | None]:
    """``NAME:VERSION`` -> (name, tag, None); ``NAME@sha256:HEX`` -> (name, None, digest)."""
    if len(requested) > 300:
        raise _Refused("request", "the requested model name is longer than 300 characters")
    if "@" in requested:
        name, _, digest = requested.partition("@")
        if not _DIGEST.match(digest):
            raise _Refused("request", f"{digest!r} is not a sha256 digest (sha256:<64 hex>)")
        tag = None
    elif ":" in requested:
        name, _, tag = requested.rpartition(":")
        digest = None
        if not _TAG.match(tag):
            raise _Refused("request", f"{tag!r} is not a valid version tag")
    else:
        raise _Refused("request", "name a release as NAME:VERSION or NAME@sha256:DIGEST")
    if not NAME.match(name):
        raise _Refused("request", f"{name!r} is not a valid adapter name")
    return name, tag, digest


def _policy(signer: Signer) -> TrustPolicy:
    return TrustPolicy(
        method=signer.method,
        public_key=signer.public_key,
        ca_chain=signer.ca_chain,
        cert_identity=signer.cert_identity,
        cert_fingerprint=signer.cert_fingerprint,
        sigstore_identity=signer.sigstore_identity,
        sigstore_issuer=signer.sigstore_issuer,
    )


def _size(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path, followlinks=False):
        for name in files:
            with contextlib.suppress(OSError):
                total += (Path(dirpath) / name).lstat().st_size
    return total


def _evict(cache: Path, keep: Path, limit: int) -> None:
    """Remove least recently used entries until the cache fits ``limit`` (never ``keep``)."""
    entries = [p for p in cache.iterdir() if p.is_dir() and not p.name.startswith(".") and p != keep]
    sizes = {p: _size(p) for p in entries}
    total = sum(sizes.values()) + _size(keep)
    for entry in sorted(entries, key=lambda p: p.stat().st_mtime):
        if total <= limit:
            break
        shutil.rmtree(entry, ignore_errors=True)
        total -= sizes[entry]


def _verify(config: ResolverConfig, source: str, out: Path | None) -> Any:
    from gate.verify import verify_bundle

    try:
        return verify_bundle(
            source, _policy(config.signer), expected_contract_sha256=config.contract_sha256, out=out
        )
    except GateFailure as e:
        check: Check = "verdict" if "verdict" in e.message else "signature"
        raise _Refused(check, e.message) from e
    except Error as e:
        raise _Refused("registry", e.message) from e


def _resolve(config: ResolverConfig, requested: str) -> tuple[str, Path, bool]:
    from gate.oci import parse_ref
    from gate.oci.pull import resolve_digest

    name, tag, digest = parse_request(requested)
    repo = config.adapters.get(name)
    if repo is None:
        raise _Refused("not-allowed", f"{name!r} is not an adapter this server may serve")
    ref = f"{repo}:{tag}" if tag else f"{repo}@{digest}"
    try:
        digest = resolve_digest(parse_ref(ref))
    except Error as e:
        raise _Refused("registry", f"{ref}: {e.message}") from e
    if digest in config.denied:
        raise _Refused("revoked", f"release {digest} is revoked on this server", digest)
    entry = config.cache_dir / digest.removeprefix("sha256:")
    bundle = entry / "bundle"
    with file_lock(config.cache_dir / ".locks" / f"{entry.name}.lock"):
        cached = bundle.is_dir()
        if cached:
            try:
                result = _verify(config, str(bundle), None)
            except _Refused:
                # What is on disk no longer verifies: it is never handed on, and it is pulled again.
                shutil.rmtree(entry, ignore_errors=True)
                cached = False
        if not cached:
            entry.mkdir(parents=True, exist_ok=True)
            try:
                result = _verify(config, f"{repo}@{digest}", bundle)
            except _Refused as e:
                shutil.rmtree(entry, ignore_errors=True)
                raise _Refused(e.check, e.reason, digest) from e
        identity = result.verdict.base_model.get("identity")
        if identity != config.base_identity:
            shutil.rmtree(entry, ignore_errors=True)
            raise _Refused(
                "other-base",
                f"gated for base {identity or '(none recorded)'}, this server serves {config.base_identity}",
                digest,
            )
        os.utime(entry)
    _evict(config.cache_dir, entry, config.cache_max_bytes)
    return digest, bundle, cached


def _audit(config: ResolverConfig, resolution: Resolution) -> None:
    if config.audit is None:
        return
    import httpx

    headers = {}
    if config.audit.token_file is not None:
        with contextlib.suppress(OSError):
            headers["Authorization"] = "Bearer " + config.audit.token_file.read_text().strip()
    payload = {**resolution.to_dict(), "at": datetime.now(UTC).isoformat(timespec="seconds")}
    payload["base_identity"] = config.base_identity
    # The audit log must never decide whether an adapter is served: a failure is logged, not raised.
    with contextlib.suppress(httpx.HTTPError):
        httpx.post(config.audit.url, json=payload, headers=headers, timeout=5.0)


def resolve(config: ResolverConfig, requested: str) -> Resolution:
    """Resolve ``requested`` under ``config`` (see the module docstring); never raises for a refusal."""
    started = time.monotonic()
    try:
        digest, bundle, cached = _resolve(config, requested)
        resolution = Resolution(
            requested,
            True,
            "ok",
            "verified",
            digest,
            str(bundle),
            round(time.monotonic() - started, 4),
            cached,
        )
    except _Refused as e:
        resolution = Resolution(
            requested, False, e.check, e.reason, e.digest, None, round(time.monotonic() - started, 4)
        )
    _audit(config, resolution)
    return resolution
