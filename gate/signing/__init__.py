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

from gate.signing._keys import generate_key, key_fingerprint
from gate.signing._policy import (
    SIGN_METHODS,
    SIGNATURE_MEDIA_TYPE,
    SignedContent,
    SigningConfig,
    SignMethod,
    TrustPolicy,
)
from gate.signing._sign import sign_bundle, tool_versions
from gate.signing._verify import verify_signature, verify_signature_bytes

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
