"""Contracts the server gates against: shipped ones plus ``GATE_SERVICE_CONTRACTS_DIRS``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from litestar import Controller, Request, get

from gate.contract import Contract
from gate.errors import InputError
from gate.resources import contracts_dir
from gate.service.domain.schemas import ContractRead
from gate.service.guards import requires
from gate.service.settings import Settings
from gate.service.state import app_state

__all__ = ["ContractController", "find_contract", "list_contracts"]

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def _dirs(settings: Settings) -> list[Path]:
    return [*settings.contracts_dirs, contracts_dir()]


def find_contract(settings: Settings, ident: str) -> Contract:
    """The contract with file stem ``ident`` (never an arbitrary path: ids are plain names)."""
    if not _ID.match(ident):
        raise InputError(
            f"contract id {ident!r} is not a plain name", hint="use an id from GET /api/contracts"
        )
    for d in _dirs(settings):
        for suffix in (".yaml", ".yml"):
            path = d / f"{ident}{suffix}"
            if path.is_file() and not path.is_symlink():
                return Contract.from_yaml(path)
    known = ", ".join(c.id for c in list_contracts(settings)) or "none"
    raise InputError(f"no contract {ident!r} on this server", hint=f"known: {known}")


def _read(contract: Contract, ident: str) -> ContractRead:
    return ContractRead(
        id=ident,
        name=contract.name,
        version=contract.metadata.version,
        sha256=contract.sha256,
        approval_required=contract.approval.required,
        publish_target=contract.publish.target,
        path=str(contract.source_path),
    )


def list_contracts(settings: Settings) -> list[ContractRead]:
    """Every readable contract, first directory wins for a repeated id."""
    seen: dict[str, ContractRead] = {}
    for d in _dirs(settings):
        if not d.is_dir():
            continue
        for path in sorted([*d.glob("*.yaml"), *d.glob("*.yml")]):
            if path.stem in seen or path.is_symlink() or not _ID.match(path.stem):
                continue
            try:
                seen[path.stem] = _read(Contract.from_yaml(path), path.stem)
            except InputError:
                continue
    return list(seen.values())


class ContractController(Controller):
    """``/api/contracts``."""

    path = "/api/contracts"
    opt = requires("read")
    tags = ["contracts"]  # noqa: RUF012

    @get("/")
    async def read_all(self, request: Request[Any, Any, Any]) -> list[ContractRead]:
        """Every contract this server can gate against."""
        return list_contracts(app_state(request).settings)

    @get("/{ident:str}")
    async def read_one(self, request: Request[Any, Any, Any], ident: str) -> ContractRead:
        """One contract by id."""
        return _read(find_contract(app_state(request).settings, ident), ident)
