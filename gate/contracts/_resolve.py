"""One place that decides which contract and which base a command uses; never a silent default.

A base comes, in this order, from: the explicit ``--base`` (a directory, or a builtin name
such as ``smollm2``); the run being judged (its run.json records the base it trained on,
used when that directory still exists and has the contract's identity); the contract's
``base_model.source`` (``builtin:smollm2`` or a directory relative to the contract); the
local model store, where ``gate base add DIR`` registered a directory under its identity.
Nothing else: a base that cannot be resolved is an :class:`InputError` naming what to set.

A contract comes from ``--contract`` (a file, or a builtin name such as ``smollm2``).

Example::

    contract = Contract.from_yaml(resolve_contract(args.contract))
    base_dir = resolve_base(contract, args.base, run=run_dir)
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from gate.contract import Contract
from gate.errors import InputError

__all__ = [
    "BUILTIN_BASES",
    "BUILTIN_CONTRACTS",
    "register_base",
    "registered_bases",
    "resolve_base",
    "resolve_contract",
    "run_of",
    "store_dir",
]

#: Contracts gate ships, by the name a user may pass instead of a file.
BUILTIN_CONTRACTS = {"smollm2": "smollm2-vllm.yaml"}
#: Bases gate can build itself, by name.
BUILTIN_BASES = ("smollm2",)
_MAX_ENTRY_BYTES = 64 << 10


def store_dir() -> Path:
    """The local model store: one JSON entry per registered base, named by its identity."""
    from gate.envs import gate_home

    return gate_home() / "bases"


def _builtin_base(name: str) -> Path:
    if name == "smollm2":
        from gate.base_model import cached_smollm2

        return cached_smollm2()
    raise InputError(f"unknown builtin base {name!r}", hint="builtin bases: " + ", ".join(BUILTIN_BASES))


def _entry_path(identity: str) -> Path:
    return store_dir() / (identity.rsplit(":", 1)[-1] + ".json")


def register_base(base_dir: Path, *, name: str | None = None) -> dict[str, str]:
    """Record ``base_dir`` in the local store under its identity; the entry written."""
    from gate.console import atomic_write_json
    from gate.identity import base_identity

    if not base_dir.is_dir():
        raise InputError(f"{base_dir}: not a directory", hint="gate base add DIR takes a model directory")
    identity = base_identity(base_dir)
    entry = {
        "identity": identity,
        "path": str(base_dir.resolve()),
        "name": name or base_dir.resolve().name,
        "added": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    atomic_write_json(_entry_path(identity), entry)
    return entry


def registered_bases() -> list[dict[str, str]]:
    """Every entry of the local store (unreadable entries are skipped)."""
    out = []
    root = store_dir()
    for file in sorted(root.glob("*.json")) if root.is_dir() else []:
        entry = _read_entry(file)
        if entry is not None:
            out.append(entry)
    return out


def _read_entry(file: Path) -> dict[str, str] | None:
    if file.is_symlink() or not file.is_file() or file.stat().st_size > _MAX_ENTRY_BYTES:
        return None
    try:
        entry = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
        return None
    return {str(k): str(v) for k, v in entry.items()}


def resolve_contract(value: Path | str | None, *, flag: str = "--contract", alternative: str = "") -> Path:
    """The contract file ``value`` names: a path, or a builtin name (``smollm2``).

    ``alternative`` names another way the command accepts (``" or --contract-digest SHA256"``).
    """
    from gate.resources import contracts_dir

    if value is None or str(value) == "":
        raise InputError(
            f"no contract given: pass {flag} FILE{alternative}",
            hint=f"write one for your base: gate contract init --base DIR --out FILE; or {flag} smollm2 "
            "for the embedded demo contract",
        )
    text = str(value)
    path = Path(value)
    if text in BUILTIN_CONTRACTS and not path.exists():
        return contracts_dir() / BUILTIN_CONTRACTS[text]
    if not path.exists() and not path.is_symlink():
        raise InputError(f"{flag} {text}: no such contract file", hint="builtin contracts: smollm2")
    # a FIFO, a directory or a link is the loader's to refuse, with its precise message
    return path.absolute()


def run_of(path: Path) -> Path | None:
    """The gate run directory ``path`` is (run.json + adapter/) or is the ``adapter/`` of; else None."""
    path = Path(path)
    for candidate in (path, path.parent) if path.name == "adapter" else (path,):
        record = candidate / "run.json"
        if record.is_file() and not record.is_symlink() and (candidate / "adapter").is_dir():
            return candidate
    return None


def _from_run(contract: Contract, run: Path) -> Path | None:
    record = run / "run.json"
    if not record.is_file() or record.is_symlink() or record.stat().st_size > (4 << 20):
        return None
    try:
        data = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    base = (data.get("base_model") or {}) if isinstance(data, dict) else {}
    path, identity = base.get("path"), base.get("identity")
    if isinstance(path, str) and identity == contract.base_model.identity and Path(path).is_dir():
        return Path(path)
    return None


def resolve_base(
    contract: Contract,
    explicit: Path | str | None = None,
    run: Path | None = None,
    *,
    flag: str = "--base",
    alternative: str = "",
) -> Path:
    """The base directory for ``contract`` (see the module docstring for the order).

    ``alternative`` names another choice the command offers (``" or --no-base"``).
    """
    if explicit is not None and str(explicit) != "":
        text = str(explicit)
        if text.removeprefix("builtin:") in BUILTIN_BASES and not Path(explicit).exists():
            return _builtin_base(text.removeprefix("builtin:"))
        path = Path(explicit)
        if not path.is_dir():
            raise InputError(f"{flag} {text}: not a directory", hint="pass the base model's directory")
        # absolute: the base is handed to subprocesses that run in other directories
        return path.absolute()
    if run is not None and (found := _from_run(contract, run)) is not None:
        return found
    source = contract.base_model.source
    if source:
        if source.startswith("builtin:"):
            return _builtin_base(source.removeprefix("builtin:"))
        path = Path(os.path.expanduser(source))
        # relative to the contract's directory, and free to lead out of it (`../my-base`, as init writes
        # it): the base is a local directory the contract points at, not a file that travels with it
        path = path if path.is_absolute() else (contract.source_path.parent / path).resolve()
        if not path.is_dir():
            raise InputError(
                f"{contract.source_path}: base_model.source {source} is not a directory",
                hint=f"fix base_model.source, or pass {flag} DIR",
            )
        return path
    entry = _read_entry(_entry_path(contract.base_model.identity))
    if entry is not None and Path(entry["path"]).is_dir():
        return Path(entry["path"])
    raise InputError(
        f"no base model for contract {contract.name}: pass {flag} DIR{alternative}",
        hint=f"or set base_model.source in {contract.source_path}, or register the base once with "
        f"`gate base add DIR` (identity {contract.base_model.identity})",
    )
