"""Verifying a bundle's signature and pinning who signed it (key, certificate identity, sigstore)."""

from __future__ import annotations

import base64
import binascii
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from gate.bundle import SIGNATURE, list_files, read_json
from gate.errors import GateFailure
from gate.signing._keys import _cert_fingerprint, key_fingerprint
from gate.signing._policy import SignedContent, TrustPolicy
from gate.signing._sign import _hashing_config

_MAX_SIGNATURE_BYTES = 8 << 20


def _leaf_certificate(sig: dict[str, Any]) -> Any:
    from cryptography import x509

    material = sig.get("verificationMaterial") or {}
    chain = (material.get("x509CertificateChain") or {}).get("certificates") or []
    raw = chain[0].get("rawBytes") if chain and isinstance(chain[0], dict) else None
    if raw is None and isinstance(material.get("certificate"), dict):
        raw = material["certificate"].get("rawBytes")
    if not isinstance(raw, str):
        raise GateFailure("signature carries no signing certificate, but a certificate signer is pinned")
    try:
        return x509.load_der_x509_certificate(base64.b64decode(raw))
    except (ValueError, binascii.Error) as e:
        raise GateFailure(f"signature's certificate cannot be parsed: {e}") from e


def _cert_identities(cert: Any) -> list[str]:
    from cryptography import x509

    names: list[str] = [cert.subject.rfc4514_string()]
    names += [a.value for a in cert.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)]
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [str(n) for n in names]
    for kind in (x509.RFC822Name, x509.UniformResourceIdentifier, x509.DNSName):
        names += san.get_values_for_type(kind)
    return [str(n) for n in names]


def _check_cert_pins(sig: dict[str, Any], policy: TrustPolicy) -> str:
    cert = _leaf_certificate(sig)
    fingerprint = _cert_fingerprint(cert)
    if policy.cert_fingerprint:
        want = policy.cert_fingerprint.replace(":", "").lower().removeprefix("sha256")
        if fingerprint != want:
            raise GateFailure(
                f"signing certificate fingerprint {fingerprint} is not the pinned {want}",
                hint="the bundle was signed by another certificate",
            )
    identities = _cert_identities(cert)
    if policy.cert_identity and policy.cert_identity not in identities:
        raise GateFailure(
            f"signing certificate identity is {', '.join(identities)}, not the pinned {policy.cert_identity}",
            hint="the bundle was signed by someone else",
        )
    return f"certificate {identities[0]} (sha256 {fingerprint})"


def _signed_files(sig: dict[str, Any]) -> dict[str, str]:
    try:
        payload = json.loads(base64.b64decode(sig["dsseEnvelope"]["payload"]))
        predicate = payload["predicate"]
        serialization = predicate["serialization"]
        resources = predicate["resources"]
    except (KeyError, TypeError, ValueError, binascii.Error) as e:
        raise GateFailure(f"signature payload is not a model-signing statement: {e}") from e
    if serialization.get("method") != "files" or serialization.get("hash_type") != "sha256":
        raise GateFailure(
            "signature was made with another serialization than per-file sha256: "
            f"{serialization.get('method')}/{serialization.get('hash_type')}"
        )
    files: dict[str, str] = {}
    for r in resources:
        if r.get("algorithm") != "sha256":
            raise GateFailure(f"signed resource {r.get('name')!r} is not hashed with sha256")
        files[str(r["name"])] = str(r["digest"])
    return files


def verify_signature(root: Path, policy: TrustPolicy, *, signature: Path | None = None) -> SignedContent:
    """Verify the signature of the bundle at ``root`` under ``policy``; return what it covers.

    Raises GateFailure naming the reason (wrong key, another identity, a file
    whose hash differs, an extra or missing file) and InputError for an
    unusable policy or an unreadable signature.
    """
    policy.validate()
    sig_path = signature or root / SIGNATURE
    if not sig_path.exists():
        raise GateFailure(f"bundle {root} is not signed (no {SIGNATURE})")
    sig = read_json(sig_path, max_bytes=_MAX_SIGNATURE_BYTES)
    if not isinstance(sig, dict):
        raise GateFailure(f"{sig_path} is not a sigstore bundle")
    # Refuse unsafe names and symlinks before model-signing walks the tree.
    list_files(root, with_digests=False)
    cfg, signer = _verifier_config(sig, policy)
    try:
        cfg.verify(root, sig_path)
    except Exception as e:  # model-signing raises ValueError, InvalidSignature, OpenSSL errors...
        detail = str(e) or type(e).__name__
        if type(e).__name__ == "InvalidSignature":
            detail = "the signature does not match the pinned key"
        raise GateFailure(
            f"signature verification failed: {detail}", hint=f"pinned signer: {policy.describe()}"
        ) from e
    return SignedContent(files=_signed_files(sig), signer=signer, method=policy.method)


def _verifier_config(sig: dict[str, Any], policy: TrustPolicy) -> tuple[Any, str]:
    """model-signing's verifying config for ``policy``, and the pinned signer in words."""
    from model_signing import verifying

    cfg = verifying.Config().set_hashing_config(_hashing_config())  # type: ignore[no-untyped-call]
    if policy.method == "key":
        assert policy.public_key is not None
        signer = f"key {key_fingerprint(policy.public_key)}"
        cfg.use_elliptic_key_verifier(public_key=policy.public_key)
    elif policy.method == "certificate":
        signer = _check_cert_pins(sig, policy)
        cfg.use_certificate_verifier(certificate_chain=list(policy.ca_chain))
    else:
        assert policy.sigstore_identity is not None and policy.sigstore_issuer is not None
        signer = f"sigstore {policy.sigstore_identity} ({policy.sigstore_issuer})"
        cfg.use_sigstore_verifier(
            identity=policy.sigstore_identity,
            oidc_issuer=policy.sigstore_issuer,
            use_staging=policy.use_staging,
        )
    return cfg, signer


def verify_signature_bytes(raw: bytes, policy: TrustPolicy, *, scratch: Path) -> SignedContent:
    """Verify signature bytes under ``policy`` before any signed file exists; return what they cover.

    A pull uses this to decide what to download: the returned file digests come
    from the verified statement, so a layer is fetched only if it is what was
    signed. ``scratch`` is a private directory where the bytes are parked for
    model-signing's reader (it reads signatures from a path) and removed again.
    """
    policy.validate()
    if len(raw) > _MAX_SIGNATURE_BYTES:
        raise GateFailure(f"signature is {len(raw)} bytes, over the {_MAX_SIGNATURE_BYTES} byte limit")
    try:
        sig = json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise GateFailure(f"signature is not valid JSON: {str(e)[:200]}") from None
    if not isinstance(sig, dict):
        raise GateFailure("signature is not a sigstore bundle (not a JSON object)")
    cfg, signer = _verifier_config(sig, policy)
    fd, tmp = tempfile.mkstemp(prefix=".signature-", suffix=".json", dir=scratch)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw)
        from model_signing._signing import sign_sigstore, sign_sigstore_pb

        reader = sign_sigstore.Signature if cfg._uses_sigstore else sign_sigstore_pb.Signature
        manifest = cfg._verifier.verify(reader.read(Path(tmp)))
        files = {str(rd.identifier): str(rd.digest.digest_hex) for rd in manifest.resource_descriptors()}
    except GateFailure:
        raise
    except Exception as e:  # model-signing raises ValueError, InvalidSignature, protobuf errors...
        detail = str(e)[:300] or type(e).__name__
        if type(e).__name__ == "InvalidSignature":
            detail = "the signature does not match the pinned key"
        raise GateFailure(
            f"signature verification failed: {detail}", hint=f"pinned signer: {policy.describe()}"
        ) from None
    finally:
        Path(tmp).unlink(missing_ok=True)
    if _signed_files(sig) != files:
        raise GateFailure("signature's statement lists other files than its verified manifest")
    return SignedContent(files=files, signer=signer, method=policy.method)
