"""The files a contract points to, and the one digest over the contract and all of them.

A contract is more than its YAML: the eval tasks and their data, the chat
template file. Fields that name such a file or directory are typed
:data:`ContractFile` / :data:`ContractDir`; :func:`references` walks the model
and finds every one of them, so a new reference field is covered by typing it,
with no list to update here.

Each referenced file gets a stable name, ``<field path>/<path inside it>``
(``eval.tasks_dir/data/capitals.jsonl``, ``prompt.chat_template_file/chat.jinja``):
that name is what the digest covers and where the bundle carries the copy
(``gate/contract/<name>``), so a verifier recomputes the digest from the
bundle's copies without the original directory layout.

Example::

    files = referenced_files(contract)         # {"eval.tasks_dir/x.yaml": Path(...), ...}
    contract_digest(yaml_sha256, {n: file_sha256(p) for n, p in files.items()})
"""

from __future__ import annotations

import os
import stat
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol

from pydantic import BaseModel

from gate.digests import listing_digest
from gate.errors import InputError

__all__ = [
    "CONTRACT_DIGEST_DOMAIN",
    "MAX_REFERENCED_BYTES",
    "MAX_REFERENCED_FILES",
    "YAML_NAME",
    "ContractDir",
    "ContractFile",
    "Reference",
    "contract_digest",
    "referenced_files",
    "references",
]

#: The name the contract's own YAML has in the digest (no reference name can equal it: those hold a '/').
YAML_NAME = "contract.yaml"
CONTRACT_DIGEST_DOMAIN = "gate.contract/v1"
#: Bounds on what a contract may point to (they travel in every bundle).
MAX_REFERENCED_FILES = 128
MAX_REFERENCED_BYTES = 64 << 20
_MAX_DEPTH = 8


@dataclass(frozen=True)
class _RefMarker:
    kind: Literal["file", "dir"]


#: A contract field naming a file, relative to the contract file.
ContractFile = Annotated[str, _RefMarker("file")]
#: A contract field naming a directory (every regular file under it is referenced).
ContractDir = Annotated[str, _RefMarker("dir")]


@dataclass(frozen=True)
class Reference:
    """One reference field of a contract: where it sits in the model and what it names."""

    field: str
    kind: Literal["file", "dir"]
    value: str


class _Resolving(Protocol):
    def resolve(self, rel: str) -> Path: ...


def _marker(annotation: Any, metadata: list[Any]) -> _RefMarker | None:
    for m in metadata:
        if isinstance(m, _RefMarker):
            return m
    if typing.get_origin(annotation) is Annotated:
        found = next((m for m in annotation.__metadata__ if isinstance(m, _RefMarker)), None)
        if found is not None:
            return found
    for arg in typing.get_args(annotation):  # Optional[...], list[...]
        found = _marker(arg, [])
        if found is not None:
            return found
    return None


def references(model: BaseModel, prefix: str = "") -> Iterator[Reference]:
    """Every :data:`ContractFile` / :data:`ContractDir` value set in ``model``, recursively."""
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        path = f"{prefix}{name}"
        marker = _marker(info.annotation, list(info.metadata))
        items: list[tuple[int | None, Any]] = (
            list(enumerate(value)) if isinstance(value, list | tuple) else [(None, value)]
        )
        for index, item in items:
            where = path if index is None else f"{path}.{index}"
            if isinstance(item, BaseModel):
                yield from references(item, where + ".")
            elif marker is not None and isinstance(item, str) and item:
                yield Reference(where, marker.kind, item)


def _regular(path: Path, what: str) -> os.stat_result:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise InputError(f"{what}: {path} does not exist") from None
    if stat.S_ISLNK(st.st_mode):
        raise InputError(f"{what}: {path} is a symlink", hint="contracts may only name real files")
    return st


def referenced_files(contract: _Resolving, model: BaseModel | None = None) -> dict[str, Path]:
    """Name -> path of every file the contract references (see the module docstring); bounded.

    Raises InputError for a missing reference, a symlink or special file, a name
    a bundle cannot carry, or more than the size/count bounds.
    """
    from gate.bundle import check_relpath

    found: dict[str, Path] = {}
    total = 0

    def add(name: str, path: Path, st: os.stat_result, field: str) -> None:
        nonlocal total
        if not stat.S_ISREG(st.st_mode):
            raise InputError(f"contract field {field}: {path} is not a regular file")
        try:
            check_relpath(name)
        except InputError:
            raise InputError(
                f"contract field {field}: {path} has a name a bundle cannot carry ({name!r})",
                hint="names are letters, digits, '_', '-', '.'; no leading dot",
            ) from None
        total += st.st_size
        found[name] = path
        if len(found) > MAX_REFERENCED_FILES or total > MAX_REFERENCED_BYTES:
            raise InputError(
                f"the contract references more than {MAX_REFERENCED_FILES} files or "
                f"{MAX_REFERENCED_BYTES >> 20} MiB (at {field})"
            )

    for ref in references(model if model is not None else contract):  # type: ignore[arg-type]
        path = contract.resolve(ref.value)
        st = _regular(path, f"contract field {ref.field}")
        if ref.kind == "file":
            add(f"{ref.field}/{path.name}", path, st, ref.field)
            continue
        if not stat.S_ISDIR(st.st_mode):
            raise InputError(f"contract field {ref.field}: {path} is not a directory")
        stack: list[tuple[Path, str, int]] = [(path, "", 0)]
        while stack:
            directory, rel, depth = stack.pop()
            with os.scandir(directory) as it:
                entries = sorted(it, key=lambda e: e.name)
            for entry in entries:
                sub = f"{rel}{entry.name}"
                if entry.name == "__pycache__":
                    continue  # bytecode caches are not part of what the contract says
                est = _regular(Path(entry.path), f"contract field {ref.field}")
                if stat.S_ISDIR(est.st_mode):
                    if depth + 1 >= _MAX_DEPTH:
                        raise InputError(f"contract field {ref.field}: {path} is nested too deep")
                    stack.append((Path(entry.path), sub + "/", depth + 1))
                else:
                    add(f"{ref.field}/{sub}", Path(entry.path), est, ref.field)
    return found


def contract_digest(yaml_sha256: str, files: Mapping[str, str]) -> str:
    """Hex digest over the contract's YAML and every referenced file (name -> hex sha256)."""
    if YAML_NAME in files:
        raise InputError(f"a referenced file may not be named {YAML_NAME}")
    return listing_digest(CONTRACT_DIGEST_DOMAIN, {YAML_NAME: yaml_sha256, **files})
