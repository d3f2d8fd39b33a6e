"""Request and response bodies of the API (msgspec structs, shown in the OpenAPI schema)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import msgspec

__all__ = [
    "AuditRead",
    "ContractRead",
    "GateRead",
    "PromoteRequest",
    "ReleaseRead",
    "ReleaseSubmit",
    "TokenCreate",
    "TokenCreated",
    "TokenRead",
]


class ReleaseSubmit(msgspec.Struct, forbid_unknown_fields=True):
    """Submit a training run that is already readable by the server (under an allowed root).

    ``contract`` is required: a release is gated against the contract its submitter names, never a default.
    """

    name: str
    version: str
    run: str
    contract: str


class PromoteRequest(msgspec.Struct, forbid_unknown_fields=True):
    """Move a channel tag to a published release."""

    channel: str


class GateRead(msgspec.Struct):
    """One gate's state."""

    gate: str
    status: str
    seconds: float | None
    updated_at: dt.datetime
    has_report: bool


class ReleaseRead(msgspec.Struct):
    """A release with its per-gate status."""

    id: int
    name: str
    version: str
    status: str
    contract: str
    contract_sha256: str
    approval_required: bool
    source: str
    target: str
    digest: str | None
    error: str | None
    submitted_by: str
    approved_by: str | None
    created_at: dt.datetime
    updated_at: dt.datetime
    gates: list[GateRead]
    verdict: dict[str, Any] | None = None


class AuditRead(msgspec.Struct):
    """One audit-log entry."""

    id: int
    ts: dt.datetime
    actor: str
    action: str
    release_id: int | None
    name: str | None
    version: str | None
    digest: str | None
    detail: dict[str, Any]


class ContractRead(msgspec.Struct):
    """A contract the server can gate against."""

    id: str
    name: str
    version: int | None
    sha256: str
    approval_required: bool
    publish_target: str
    path: str


class TokenCreate(msgspec.Struct, forbid_unknown_fields=True):
    """Create an API token."""

    name: str
    role: str
    expires_in_s: float | None = None


class TokenCreated(msgspec.Struct):
    """A new token: the secret is shown only here."""

    name: str
    role: str
    token: str


class TokenRead(msgspec.Struct):
    """An API token (never its secret)."""

    name: str
    role: str
    created_at: dt.datetime
    expires_at: dt.datetime | None
    revoked: bool
