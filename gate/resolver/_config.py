"""The resolver's one configuration file: where released adapters live and whom to trust.

``gate serve-config`` writes it; the vLLM plugin and ``python -m gate.resolver``
read it. It is JSON, bounded and strict (unknown keys are refused), with
absolute paths only, so the same file means the same thing to every process.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gate.errors import InputError
from gate.validation import read_bounded

__all__ = ["CONFIG_ENV", "ResolverConfig", "Signer"]

#: The variable that tells the vLLM plugin where the configuration is.
CONFIG_ENV = "GATE_RESOLVER_CONFIG"
_MAX_CONFIG_BYTES = 1 << 20
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
#: Adapter names a request may use: a registry repository's last path segment, roughly.
NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,127}$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Signer(_Model):
    """Who must have signed a release (one of gate's verification methods, pinned)."""

    method: Literal["key", "certificate", "sigstore"]
    public_key: Path | None = None
    ca_chain: tuple[Path, ...] = ()
    cert_identity: str | None = None
    cert_fingerprint: str | None = None
    sigstore_identity: str | None = None
    sigstore_issuer: str | None = None


class Audit(_Model):
    """Where each resolution is reported (the gate service's ``POST /api/resolutions``)."""

    url: str = Field(pattern=r"^https?://")
    token_file: Path | None = None


class ResolverConfig(_Model):
    """Registries or layouts per adapter name, the pinned signer, the served base, the cache."""

    version: Literal[1] = 1
    #: The interpreter that has gate installed (the plugin runs ``python -m gate.resolver`` with it).
    gate_python: Path
    #: Identity of the base this server serves; a release gated for another base is refused.
    base_identity: str = Field(min_length=8, max_length=200)
    #: sha256 of the contract releases must have passed under.
    contract_sha256: str = Field(pattern=r"^(sha256:)?[0-9a-f]{64}$")
    signer: Signer
    #: Allowed adapter name -> repository (``oci://HOST/REPO`` or ``oci-layout:///ABS/PATH``), no tag.
    adapters: dict[str, str] = Field(min_length=1, max_length=10_000)
    #: Revoked releases (manifest digests): refused whatever their signature says.
    denied: tuple[Annotated[str, Field(pattern=_DIGEST.pattern)], ...] = ()
    cache_dir: Path
    cache_max_bytes: int = Field(default=32 << 30, gt=0, le=1 << 50)
    timeout_s: float = Field(default=120.0, gt=0, le=3600)
    audit: Audit | None = None

    @field_validator("adapters")
    @classmethod
    def _names(cls, value: dict[str, str]) -> dict[str, str]:
        for name, repo in value.items():
            if not NAME.match(name):
                raise ValueError(f"adapter name {name!r} must match {NAME.pattern}")
            if not repo.startswith(("oci://", "oci-layout://")) or ":" in repo.split("/")[-1] or "@" in repo:
                raise ValueError(
                    f"adapters.{name}: {repo!r} must be oci://HOST/REPO or oci-layout://PATH, no tag"
                )
        return value

    @field_validator("gate_python", "cache_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        if not value.is_absolute():
            raise ValueError(f"{value} must be an absolute path")
        return value

    @classmethod
    def from_file(cls, path: Path) -> ResolverConfig:
        """Read and validate the configuration; :class:`InputError` names what is wrong."""
        raw = read_bounded(path, _MAX_CONFIG_BYTES, what="resolver configuration")
        try:
            data = json.loads(raw)
        except ValueError as e:
            raise InputError(f"{path}: not valid JSON: {e}") from e
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "(top level)"
            raise InputError(f"{path}: {where}: {first['msg']}") from e

    def write(self, path: Path) -> Path:
        """Write the configuration atomically (JSON, sorted keys)."""
        from gate.console import atomic_write_text

        atomic_write_text(path, self.model_dump_json(indent=2) + "\n")
        return path
