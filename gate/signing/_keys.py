"""Key pairs and fingerprints (EC P-256 PEM keys, X.509 certificates)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from gate.errors import InputError


def generate_key(private_path: Path, public_path: Path) -> str:
    """Write a new EC P-256 key pair (PEM) and return the public key's fingerprint."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    private_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(private_pem)
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    public_path.write_bytes(public_pem)
    return "sha256:" + hashlib.sha256(public_pem).hexdigest()


def key_fingerprint(path: Path, *, password: str | None = None) -> str:
    """``sha256:<hex>`` of the PEM public key of a public or private key file (model-signing's key hint)."""
    from cryptography.hazmat.primitives import serialization

    raw = path.read_bytes()
    try:
        if b"PRIVATE KEY" in raw:
            pub = serialization.load_pem_private_key(
                raw, password.encode() if password else None
            ).public_key()
        else:
            pub = serialization.load_pem_public_key(raw)
    except (ValueError, TypeError) as e:
        raise InputError(f"{path} is not a PEM key: {e}") from e
    pem = pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(pem).hexdigest()


def _load_pem_cert(path: Path) -> Any:
    from cryptography import x509

    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except ValueError as e:
        raise InputError(f"{path} is not a PEM certificate: {e}") from e


def _cert_fingerprint(cert: Any) -> str:
    from cryptography.hazmat.primitives import hashes

    return str(cert.fingerprint(hashes.SHA256()).hex())
