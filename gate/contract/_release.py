"""How a release is signed, where it is published, whether a person approves it."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from gate.contract._section import Section


class Signing(Section):
    """How the release bundle is signed and which signer identity verifiers accept."""

    method: Literal["key", "certificate", "sigstore"] = "key"
    key_fingerprint: str | None = None
    certificate_identity: str | None = None
    sigstore_identity: str | None = None
    sigstore_issuer: str | None = None

    @model_validator(mode="after")
    def _identity_policy(self) -> Signing:
        if self.method == "sigstore" and not (self.sigstore_identity and self.sigstore_issuer):
            raise ValueError("method sigstore needs sigstore_identity and sigstore_issuer")
        return self


class Publish(Section):
    """Where a released bundle goes."""

    target: str = Field(min_length=1, description="OCI reference, e.g. oci-layout://./out/registry:name")


class Approval(Section):
    """Whether a person must approve a release after every gate passed."""

    required: bool = False
