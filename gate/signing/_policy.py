"""How to sign (:class:`SigningConfig`), whom a verifier accepts (:class:`TrustPolicy`), what was signed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from gate.errors import InputError
from gate.signing._keys import _cert_fingerprint, _load_pem_cert, key_fingerprint

SignMethod = Literal["key", "certificate", "sigstore"]


SIGN_METHODS: tuple[str, ...] = get_args(SignMethod)


#: Media type of a sigstore bundle (the signature file, and its OCI referrer's artifactType).
SIGNATURE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"


@dataclass(frozen=True)
class SigningConfig:
    """How to sign: the method and its material. Secrets are never written into reports."""

    method: SignMethod
    private_key: Path | None = None
    #: Password of an encrypted private key (read from GATE_SIGN_KEY_PASSWORD by the CLI).
    key_password: str | None = None
    certificate: Path | None = None
    chain: tuple[Path, ...] = ()
    #: Keyless only: an explicit OIDC token; None uses ambient credentials (GitHub Actions).
    identity_token: str | None = None
    use_staging: bool = False

    def validate(self) -> None:
        """Raise InputError when the material the method needs is missing or unreadable."""
        if self.method not in SIGN_METHODS:
            raise InputError(
                f"unknown signing method {self.method!r}", hint=f"one of {', '.join(SIGN_METHODS)}"
            )
        if self.method in ("key", "certificate"):
            _need_file(self.private_key, "--sign-key", self.method)
        if self.method == "certificate":
            _need_file(self.certificate, "--sign-cert", self.method)
            if not self.chain:
                raise InputError(
                    "signing method 'certificate' needs the issuing chain", hint="pass --sign-chain CA.pem"
                )
            for c in self.chain:
                _need_file(c, "--sign-chain", self.method)

    def describe(self) -> dict[str, Any]:
        """What the verdict records about the signing (no secrets)."""
        info: dict[str, Any] = {"method": self.method}
        if self.method == "key" and self.private_key is not None:
            info["key_fingerprint"] = key_fingerprint(self.private_key, password=self.key_password)
        if self.method == "certificate" and self.certificate is not None:
            info["certificate_sha256"] = _cert_fingerprint(_load_pem_cert(self.certificate))
        return info


@dataclass(frozen=True)
class TrustPolicy:
    """Who a verifier accepts as the signer. Each method must pin an identity."""

    method: SignMethod
    public_key: Path | None = None
    #: Certificate method: the trust anchors (root CA, intermediates) as PEM files.
    ca_chain: tuple[Path, ...] = ()
    #: Certificate method: expected subjectAltName (email, URI, DNS) or subject (RFC 4514 or CN).
    cert_identity: str | None = None
    #: Certificate method: expected sha256 fingerprint of the signing certificate (hex, colons allowed).
    cert_fingerprint: str | None = None
    sigstore_identity: str | None = None
    sigstore_issuer: str | None = None
    use_staging: bool = False

    def validate(self) -> None:
        """Raise InputError unless the policy pins a signer for its method."""
        if self.method == "key":
            _need_file(self.public_key, "--key", "key")
        elif self.method == "certificate":
            if not self.ca_chain:
                raise InputError(
                    "certificate verification needs the CA chain", hint="pass --cert-chain CA.pem"
                )
            for c in self.ca_chain:
                _need_file(c, "--cert-chain", "certificate")
            if not (self.cert_identity or self.cert_fingerprint):
                raise InputError(
                    "certificate verification must pin who signed",
                    hint="pass --cert-identity (SAN or subject) or --cert-fingerprint SHA256",
                )
        elif self.method == "sigstore":
            if not (self.sigstore_identity and self.sigstore_issuer):
                raise InputError(
                    "sigstore verification needs both the identity and the OIDC issuer",
                    hint="pass --sigstore-identity and --sigstore-issuer",
                )
        else:
            raise InputError(f"unknown signing method {self.method!r}")

    def describe(self) -> str:
        """The pinned signer in words."""
        if self.method == "key":
            return f"key {key_fingerprint(self.public_key)}" if self.public_key else "key"
        if self.method == "certificate":
            pins = [p for p in (self.cert_identity, self.cert_fingerprint) if p]
            return "certificate " + " / ".join(pins)
        return f"sigstore {self.sigstore_identity} ({self.sigstore_issuer})"


@dataclass(frozen=True)
class SignedContent:
    """What a verified signature covers: file path -> sha256 (hex), and who signed."""

    files: dict[str, str]
    signer: str
    method: SignMethod


def _need_file(path: Path | None, flag: str, method: str) -> None:
    if path is None:
        raise InputError(f"signing method '{method}' needs {flag}")
    if not path.is_file():
        raise InputError(f"{flag} {path} does not exist or is not a file")
