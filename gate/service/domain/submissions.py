"""What a release submission must name before a release row is made: its ids, its run, its size.

A name and a version (the version becomes an OCI tag), and a run directory the
server may read (inside one of the allowed roots); an upload over the limit is a
413 (:class:`TooLarge`, also the pilot upload's).
"""

from __future__ import annotations

import re
from pathlib import Path

from litestar.exceptions import ClientException
from litestar.status_codes import HTTP_413_REQUEST_ENTITY_TOO_LARGE

from gate.errors import InputError
from gate.service.settings import Settings

__all__ = ["TooLarge", "check_ids", "resolve_reference"]

_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,127}$")
# An OCI tag: what the version becomes in the registry reference.
_VERSION = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,99}$")


class TooLarge(ClientException):
    """413: the upload is over the limit."""

    status_code = HTTP_413_REQUEST_ENTITY_TOO_LARGE


def check_ids(name: str, version: str) -> None:
    """A release name gate allows and a version that is a valid OCI tag, else an InputError naming it."""
    if not _NAME.match(name):
        raise InputError(
            f"release name {name!r} is not allowed", hint="lowercase letters, digits, '.', '_', '-'"
        )
    if not _VERSION.match(version):
        raise InputError(
            f"release version {version!r} is not a valid OCI tag", hint="e.g. 1.2.0 or 2026-11-28.1"
        )


def resolve_reference(settings: Settings, raw: str) -> Path:
    """A run directory the caller named: it must resolve inside one of the allowed roots."""
    if not settings.allowed_roots:
        raise InputError(
            "this server accepts no run references",
            hint="upload an archive, or set GATE_SERVICE_ALLOWED_ROOTS",
        )
    path = Path(raw)
    if not path.is_absolute():
        raise InputError(f"run reference {raw!r} must be an absolute path on the server")
    real = path.resolve()
    roots = [r.resolve() for r in settings.allowed_roots]
    if not any(real == r or r in real.parents for r in roots):
        raise InputError(
            f"run {raw!r} is outside the directories this server may read",
            hint="allowed: " + ", ".join(str(r) for r in roots),
        )
    if not (real / "run.json").is_file():
        raise InputError(f"{raw} is not a training run directory (no run.json)")
    return real
