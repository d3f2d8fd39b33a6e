"""Promotion: move a channel tag (``staging``, ``prod``) of an adapter name to a published version.

The published artifact is first verified as a serving team would (``gate verify
bundle``: signature over the file digests, the pulled bytes against them, the
verdict and contract), by its digest, with the key the service signs with. Only
then is the same manifest tagged ``CHANNEL`` in the same repository, so
``oci://HOST/REPO:prod`` names exactly the verified bytes. The database row and
its audit entry are written by the caller after the tag moved.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from gate.errors import InputError
from gate.service.settings import Settings

if TYPE_CHECKING:
    from gate.signing import TrustPolicy

__all__ = ["CHANNELS", "promote"]

#: Channel tags a release may be promoted to.
CHANNELS = ("staging", "prod")


def _trust(settings: Settings, scratch: Path) -> TrustPolicy:
    from cryptography.hazmat.primitives import serialization

    from gate.signing import TrustPolicy

    key = settings.publish.sign_key
    if settings.publish.sign_method != "key" or key is None:
        raise InputError(
            "promotion verifies with the service's signing key; this server signs by "
            f"{settings.publish.sign_method!r} without one",
            hint="set GATE_SERVICE_SIGN_KEY (method key)",
        )
    password = os.environ.get("GATE_SIGN_KEY_PASSWORD")
    private = serialization.load_pem_private_key(key.read_bytes(), password.encode() if password else None)
    public = scratch / "public.pem"
    public.write_bytes(
        private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return TrustPolicy(method="key", public_key=public)


def promote(settings: Settings, target: str, digest: str, contract_sha256: str, channel: str) -> str:
    """Verify ``target`` at ``digest``, then tag that manifest ``channel``; return the channel reference."""
    from gate.oci import OciRef, open_store, parse_ref
    from gate.verify import verify_bundle

    if channel not in CHANNELS:
        raise InputError(f"unknown channel {channel[:40]!r}", hint="one of " + ", ".join(CHANNELS))
    ref = parse_ref(target).with_digest(digest)
    with tempfile.TemporaryDirectory(prefix="gate-promote-") as tmp:
        policy = _trust(settings, Path(tmp))
        verify_bundle(str(ref), policy, expected_contract_sha256=contract_sha256)
    store = open_store(ref)
    raw = store.get_manifest(digest)
    if raw is None:
        raise InputError(f"{ref} has no manifest {digest} any more")
    media = json.loads(raw).get("mediaType") or "application/vnd.oci.image.manifest.v1+json"
    store.put_manifest(raw, str(media), channel)
    return str(OciRef(ref.kind, ref.location, ref.repository, channel, None))
