"""Sign and verify bundles with OpenSSF model-signing (sigstore bundle format).

Three methods, the same as ``model_signing``: ``key`` (an EC private key),
``certificate`` (a key plus its certificate chain) and keyless ``sigstore``
(ambient OIDC, e.g. GitHub Actions ``id-token: write``). Every file of the bundle
except the signature itself is hashed with sha256, so the signed digests are the
OCI layer digests and a verifier can compare the two lists directly.

Verification always pins who signed: the public key, the certificate's identity
(a subjectAltName or subject, or its sha256 fingerprint; model-signing checks the
chain but not who the leaf belongs to, so gate does), or the sigstore identity
and OIDC issuer.

Example::

    generate_key(Path("release.key"), Path("release.pub"))
    sign_bundle(Path("bundle"), SigningConfig(method="key", private_key=Path("release.key")))
    signed = verify_signature(Path("bundle"), TrustPolicy(method="key", public_key=Path("release.pub")))
    signed.files   # {"adapter_config.json": "<sha256>", ...}
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from gate.bundle import SIGNATURE, list_files, read_json
from gate.console import atomic_write_text
from gate.errors import GateFailure, InputError, ToolError

__all__ = [
    "SIGNATURE_MEDIA_TYPE",
    "SIGN_METHODS",
    "SignMethod",
    "SignedContent",
    "SigningConfig",
    "TrustPolicy",
    "generate_key",
    "key_fingerprint",
    "sign_bundle",
    "tool_versions",
    "verify_signature",
    "verify_signature_bytes",
]

SignMethod = Literal["key", "certificate", "sigstore"]
SIGN_METHODS: tuple[str, ...] = get_args(SignMethod)
#: Media type of a sigstore bundle (the signature file, and its OCI referrer's artifactType).
SIGNATURE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
_MAX_SIGNATURE_BYTES = 8 << 20


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


def tool_versions() -> dict[str, str]:
    """Versions of the signing and transport libraries (recorded in verdicts)."""
    from importlib.metadata import PackageNotFoundError, version

    found: dict[str, str] = {}
    for dist in ("model-signing", "sigstore", "oras"):
        try:
            found[dist] = version(dist)
        except PackageNotFoundError:
            found[dist] = "absent"
    return found


def _hashing_config() -> Any:
    from model_signing import hashing

    # sha256 per file: the signed digests are then exactly the OCI layer digests.
    # Git paths are NOT ignored: every published file must be covered.
    return (
        hashing.Config()  # type: ignore[no-untyped-call]
        .use_file_serialization(hashing_algorithm="sha256", allow_symlinks=False)
        .set_ignored_paths(paths=[SIGNATURE], ignore_git_paths=False)
    )


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


def sign_bundle(root: Path, config: SigningConfig) -> Path:
    """Sign every file of the bundle at ``root``; write ``gate/signature.sigstore.json`` atomically.

    The bundle is checked first (regular files only, safe names, bounded sizes).
    """
    config.validate()
    list_files(root, with_digests=False)
    from model_signing import signing

    cfg = signing.Config().set_hashing_config(_hashing_config())  # type: ignore[no-untyped-call]
    try:
        if config.method == "key":
            assert config.private_key is not None
            cfg.use_elliptic_key_signer(private_key=config.private_key, password=config.key_password)
        elif config.method == "certificate":
            assert config.private_key is not None and config.certificate is not None
            cfg.use_certificate_signer(
                private_key=config.private_key,
                signing_certificate=config.certificate,
                certificate_chain=list(config.chain),
            )
        else:
            cfg.use_sigstore_signer(
                use_ambient_credentials=config.identity_token is None,
                identity_token=config.identity_token,
                use_staging=config.use_staging,
            )
        # The signature is written outside the bundle first: a half-written file must never sit in it.
        with tempfile.TemporaryDirectory(prefix="gate-sign-") as tmp:
            tmp_sig = Path(tmp) / "signature.json"
            cfg.sign(root, tmp_sig)
            text = tmp_sig.read_text(encoding="utf-8")
    except (ValueError, TypeError) as e:
        raise InputError(f"cannot sign with method '{config.method}': {e}") from e
    except Exception as e:  # sigstore/OIDC/network failures surface as many types
        raise ToolError(f"signing with method '{config.method}' failed: {e}") from e
    target = root / SIGNATURE
    atomic_write_text(target, text)
    return target


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
