"""The release bundle: the one place that defines what a released adapter directory holds.

A bundle is a plain directory. The adapter files sit at its root, so the
directory itself can be handed to vLLM (``--lora-modules name=DIR``); gate's own
records live under ``gate/``::

    BUNDLE/
      adapter_config.json, adapter_model.safetensors, ...   the adapter as trained
      gate/run.json                 the training run record
      gate/contract.yaml            the contract the gates ran under (byte copy)
      gate/contract/<field>/...     every file the contract references (eval tasks + data, templates)
      gate/chat_template.jinja      the chat template the contract pins (what vLLM serves)
      gate/reports/check.json       gate check report
      gate/reports/smoke.json       gate smoke report
      gate/reports/eval.json        gate eval report (+ eval.md, human-readable)
      gate/verdict.json             which gates ran, their results, tool versions, timestamps, approval
      gate/signature.sigstore.json  the signature (the only file NOT covered by it)

Every file except the signature is signed and becomes one OCI layer. Readers
here never follow symlinks and bound every size, because pulled bundles are
hostile input until their signature has been verified.

Example::

    files = list_files(Path("bundle"))          # [BundleFile("adapter_config.json", ...), ...]
    verdict = read_verdict(Path("bundle"))      # Verdict(passed=True, ...)
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from gate.digests import file_sha256, listing_digest, sha256_bytes
from gate.errors import InputError

__all__ = [
    "CHAT_TEMPLATE",
    "CONTRACT",
    "CONTRACT_FILES",
    "GATE_DIR",
    "MAX_FILES",
    "MAX_FILE_BYTES",
    "MAX_JSON_BYTES",
    "REPORTS",
    "REQUIRED_GATES",
    "RUN_RECORD",
    "SIGNATURE",
    "V1_GATES",
    "VERDICT",
    "ApprovalRecord",
    "BundleFile",
    "ContractRef",
    "GateResult",
    "GateStatus",
    "Verdict",
    "check_relpath",
    "file_kind",
    "list_files",
    "read_json",
    "read_verdict",
    "staged_digest",
    "staged_files",
]

GATE_DIR = "gate"
RUN_RECORD = "gate/run.json"
CONTRACT = "gate/contract.yaml"
#: Where the files the contract references travel, by their names in the contract's digest.
CONTRACT_FILES = "gate/contract"
CHAT_TEMPLATE = "gate/chat_template.jinja"
VERDICT = "gate/verdict.json"
SIGNATURE = "gate/signature.sigstore.json"
#: Report file of each gate, relative to the bundle root.
REPORTS: dict[str, str] = {
    "check": "gate/reports/check.json",
    "smoke": "gate/reports/smoke.json",
    "eval": "gate/reports/eval.json",
}
EVAL_MARKDOWN = "gate/reports/eval.md"
#: The gates that must all have passed for a bundle to be released now, in order.
REQUIRED_GATES: tuple[str, ...] = ("check", "smoke", "eval")
#: The gates every verdict of format 1.0 requires at least. A verdict is judged by its own
#: ``required_gates``; a gate added to REQUIRED_GATES later leaves earlier releases valid.
V1_GATES: tuple[str, ...] = ("check", "smoke", "eval")

#: Bounds on what a bundle may hold (adapters are MBs to a few GBs; reports are small).
MAX_FILES = 256
MAX_FILE_BYTES = 16 << 30
MAX_JSON_BYTES = 32 << 20

# Conservative file names: no leading dot, no backslash, no control characters.
_COMPONENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+=@,-]{0,127}$")

GateStatus = Literal["passed", "failed", "error", "skipped"]
FileKind = Literal["weight", "weight-config", "doc"]


@dataclass(frozen=True)
class BundleFile:
    """One file of a bundle: its POSIX path relative to the root, size and sha256 (hex)."""

    path: str
    size: int
    sha256: str


def check_relpath(name: str) -> str:
    """Return ``name`` if it is a safe relative POSIX path inside a bundle, else raise InputError.

    Refuses absolute paths, ``..``, empty or dot-leading components, backslashes
    and control characters: a pulled manifest names these paths and must not be
    able to write outside the output directory.
    """
    if not isinstance(name, str) or not name or len(name) > 512:
        raise InputError(f"unsafe path in bundle: {name!r}")
    pure = PurePosixPath(name)
    if pure.is_absolute() or name != pure.as_posix():
        raise InputError(f"unsafe path in bundle: {name!r} (must be a plain relative path)")
    parts = pure.parts
    if len(parts) > 8 or any(not _COMPONENT.match(p) for p in parts):
        raise InputError(
            f"unsafe path in bundle: {name!r}",
            hint="components must be plain names (letters, digits, '_', '-', '.'; no leading dot, no '..')",
        )
    return name


def file_kind(path: str) -> FileKind:
    """Which ModelPack layer kind a bundle file is: weights, weight config, or documentation."""
    if path.startswith(GATE_DIR + "/"):
        return "doc"
    if path.endswith((".safetensors", ".bin", ".pt", ".gguf")):
        return "weight"
    return "weight-config"


def _lstat_regular(path: Path, rel: str) -> os.stat_result:
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        raise InputError(f"bundle holds a symlink: {rel}", hint="bundles hold regular files only")
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"bundle holds something that is not a regular file: {rel}")
    if st.st_size > MAX_FILE_BYTES:
        raise InputError(f"bundle file {rel} is {st.st_size} bytes, over the {MAX_FILE_BYTES} byte limit")
    return st


def list_files(root: Path, *, with_digests: bool = True, include_signature: bool = False) -> list[BundleFile]:
    """Every regular file of the bundle at ``root``, sorted by path, without following symlinks.

    Raises InputError on a symlink, a special file, an unsafe name, too many or
    too large files. The signature file is left out unless asked for: it is the
    one file the signature does not cover.
    """
    if root.is_symlink() or not root.is_dir():
        raise InputError(f"not a bundle directory: {root}")
    found: list[BundleFile] = []
    stack: list[tuple[Path, str]] = [(root, "")]
    while stack:
        directory, prefix = stack.pop()
        with os.scandir(directory) as it:
            for entry in it:
                rel = f"{prefix}{entry.name}"
                check_relpath(rel)
                if entry.is_symlink():
                    raise InputError(f"bundle holds a symlink: {rel}", hint="bundles hold regular files only")
                if entry.is_dir(follow_symlinks=False):
                    stack.append((Path(entry.path), rel + "/"))
                    continue
                if rel == SIGNATURE and not include_signature:
                    continue
                st = _lstat_regular(Path(entry.path), rel)
                digest = file_sha256(Path(entry.path)) if with_digests else ""
                found.append(BundleFile(rel, st.st_size, digest))
                if len(found) > MAX_FILES:
                    raise InputError(f"bundle {root} holds more than {MAX_FILES} files")
    return sorted(found, key=lambda f: f.path)


def read_json(path: Path, *, max_bytes: int = MAX_JSON_BYTES) -> Any:
    """Parse a JSON file that must be a regular file (not a symlink) of at most ``max_bytes``."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise InputError(f"missing file: {path}") from None
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"{path} is not a regular file (symlinks are refused)")
    if st.st_size > max_bytes:
        raise InputError(f"{path} is {st.st_size} bytes, over the {max_bytes} byte limit")
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as fh:
        raw = fh.read(max_bytes + 1)
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{path} is not valid JSON: {e}") from e


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class GateResult(_Frozen):
    """What one gate did: its status, why, when, and where its report is."""

    name: str
    status: GateStatus
    summary: str = ""
    report: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    seconds: float | None = None


class ContractRef(_Frozen):
    """The contract a verdict was reached under."""

    name: str
    version: int | None = None
    sha256: str
    path: str = CONTRACT


class ApprovalRecord(_Frozen):
    """Who approved a release, when, through which credential, and exactly what they approved."""

    by: str = Field(min_length=1, description="the approver: 'token:NAME', 'oidc:SUBJECT' or a CLI name")
    via: Literal["token", "oidc", "cli"]
    subject: str = Field(min_length=1, description="the API token's name, the OIDC subject, or the CLI name")
    issuer: str | None = Field(default=None, description="OIDC issuer, when approved with an OIDC token")
    at: str
    adapter_digest: str
    staged_digest: str = Field(description="digest of the staged, gated bundle the approver saw")


class Verdict(_Frozen):
    """The release decision written into every bundle (``gate/verdict.json``)."""

    version: Literal["1.0"] = "1.0"
    passed: bool
    stopped_at: str | None = None
    reason: str | None = None
    required_gates: tuple[str, ...] = REQUIRED_GATES
    gates: tuple[GateResult, ...] = ()
    contract: ContractRef
    adapter_digest: str
    base_model: dict[str, Any] = Field(default_factory=dict)
    run: dict[str, Any] = Field(default_factory=dict)
    tools: dict[str, str] = Field(default_factory=dict)
    #: What gate corrected while assembling the bundle (e.g. a local base path normalised).
    fixes: tuple[str, ...] = ()
    approval_required: bool = False
    #: Digest of the gated bundle as staged (see :func:`staged_digest`); what an approval names.
    staged_digest: str | None = None
    approval: ApprovalRecord | None = None
    created_at: str

    def gate(self, name: str) -> GateResult | None:
        """The result of gate ``name``, or None if it did not run."""
        return next((g for g in self.gates if g.name == name), None)

    def problems(self) -> list[str]:
        """Every reason this verdict does not allow a release (empty when it does)."""
        found: list[str] = []
        if not self.passed:
            found.append(f"verdict is 'failed' (stopped at {self.stopped_at}: {self.reason})")
        for name in V1_GATES:
            if name not in self.required_gates:
                found.append(f"verdict does not require gate '{name}'")
        for name in self.required_gates:
            result = self.gate(name)
            if result is None:
                found.append(f"gate '{name}' did not run")
            elif result.status != "passed":
                found.append(f"gate '{name}' {result.status}: {result.summary}")
        if self.approval_required and self.approval is None:
            found.append("the contract requires a person's approval and the verdict records none")
        if self.approval is not None:
            if self.approval.adapter_digest != self.adapter_digest:
                found.append(
                    f"the approval names adapter {self.approval.adapter_digest}, not {self.adapter_digest}"
                )
            if self.approval.staged_digest != self.staged_digest:
                found.append(
                    f"the approval names staged bundle {self.approval.staged_digest}, "
                    f"not the verdict's {self.staged_digest}"
                )
        return found


#: Verdict fields an approval changes; every other field is part of what was approved.
_DECISION_FIELDS = {"passed", "stopped_at", "reason", "approval", "staged_digest"}


def staged_files(root: Path) -> dict[str, str]:
    """Path -> sha256 of every file of a staged bundle that the gates produced or judged.

    The verdict and signature are left out: approving rewrites the one and adds the other.
    """
    return {f.path: f.sha256 for f in list_files(root) if f.path != VERDICT}


def staged_digest(files: Mapping[str, str], verdict: Verdict) -> str:
    """``sha256:<hex>`` over a staged bundle's files and the verdict's findings (not its decision)."""
    core = verdict.model_dump(mode="json", exclude=_DECISION_FIELDS)
    core_sha = sha256_bytes(json.dumps(core, sort_keys=True, separators=(",", ":")).encode())
    return "sha256:" + listing_digest("gate.staged/v1", {**files, f"{VERDICT}#findings": core_sha})


def read_verdict(root: Path) -> Verdict:
    """Load and validate ``gate/verdict.json`` of the bundle at ``root``."""
    data = read_json(root / VERDICT)
    try:
        return Verdict.model_validate(data)
    except ValueError as e:
        raise InputError(f"{root / VERDICT} is not a valid gate verdict: {e}") from e
