"""Signing a bundle with model-signing: sha256 per file, the signature itself excluded."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from gate.bundle import SIGNATURE, list_files
from gate.console import atomic_write_text
from gate.errors import InputError, ToolError
from gate.signing._policy import SigningConfig


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
