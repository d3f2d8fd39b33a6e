"""Verify a released bundle: pulled by digest, signed by the pinned signer, and passed every gate.

``verify_bundle(ref, policy, expected_contract_sha256=...)`` accepts
``oci://HOST[:PORT]/REPO:TAG`` (or ``@sha256:...``), ``oci-layout://PATH:TAG`` or a
local bundle directory. It succeeds only when all of these hold:

1. a signature referrer verifies under the pinned key, certificate identity, or
   sigstore identity + issuer, *before any layer is downloaded*;
2. the signed file list (names and sha256) equals the manifest's layers;
3. every layer matches its digest while it streams, and no layer path leaves the
   output directory;
4. the verdict says every gate it requires passed, under the expected contract, the
   contract digest recomputed from the bundled contract and the files it references
   is that contract's, run.json names the bundle's adapter files, and the adapter digest the
   verdict names is the digest of the pulled adapter files (recomputed here).

Anything else raises :class:`gate.errors.GateFailure` with the reason.

Example::

    result = verify_bundle("oci-layout://./registry:v1", TrustPolicy(method="key", public_key=Path("k.pub")),
                           expected_contract_sha256=Contract.from_yaml(path).sha256, out=Path("adapter"))
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gate.bundle import (
    EVAL_MARKDOWN,
    GATE_DIR,
    REPORTS,
    REQUIRED_GATES,
    Verdict,
    list_files,
    read_json,
    read_verdict,
)
from gate.digests import files_digest
from gate.errors import GateFailure, InputError
from gate.evidence import bundle_problems
from gate.oci import is_oci_ref, parse_ref, pull
from gate.oci.pull import layer_diff
from gate.signing import TrustPolicy, verify_signature, verify_signature_bytes

__all__ = ["VerifyResult", "verify_bundle"]

_MAX_REPORT_BYTES = 4 << 20


@dataclass(frozen=True)
class VerifyResult:
    """A verified bundle: where it came from, who signed it, and what its gates said."""

    ref: str
    digest: str | None
    signer: str
    contract_sha256: str
    verdict: Verdict
    files: dict[str, str]
    reports: dict[str, Any] = field(default_factory=dict)
    eval_markdown: str | None = None
    out: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (``gate verify bundle --json``)."""
        return {
            "version": "1.0",
            "verified": True,
            "ref": self.ref,
            "digest": self.digest,
            "signer": self.signer,
            "contract_sha256": self.contract_sha256,
            "gates": [g.model_dump() for g in self.verdict.gates],
            "files": self.files,
            "reports": self.reports,
            "out": str(self.out) if self.out else None,
        }


def _check_verdict(root: Path, expected_contract_sha256: str) -> tuple[Verdict, str]:
    verdict = read_verdict(root)
    # The contract digest (YAML + referenced files) and run.json, recomputed from the bundle's bytes.
    problems = verdict.problems() + bundle_problems(root, verdict)
    actual = verdict.contract.sha256
    want = expected_contract_sha256.removeprefix("sha256:")
    if verdict.contract.sha256 != want:
        problems.append(
            f"released under contract {verdict.contract.name!r} (sha256 {verdict.contract.sha256}), "
            f"not the expected contract (sha256 {want})"
        )
    adapter = sorted(f.path for f in list_files(root) if not f.path.startswith(GATE_DIR + "/"))
    got = files_digest(root, adapter)
    if got != verdict.adapter_digest:
        problems.append(
            f"the verdict names adapter digest {verdict.adapter_digest}, "
            f"but the adapter files ({', '.join(adapter)}) have {got}"
        )
    if problems:
        raise GateFailure("the bundle's verdict does not allow serving it: " + "; ".join(problems))
    return verdict, actual


def _reports(root: Path) -> tuple[dict[str, Any], str | None]:
    reports: dict[str, Any] = {}
    for name, rel in REPORTS.items():
        path = root / rel
        if path.is_file() and not path.is_symlink():
            reports[name] = read_json(path, max_bytes=_MAX_REPORT_BYTES)
    md = root / EVAL_MARKDOWN
    text = None
    if md.is_file() and not md.is_symlink() and md.stat().st_size <= _MAX_REPORT_BYTES:
        text = md.read_text(encoding="utf-8", errors="replace")
    return reports, text


_STAGING_PREFIX = ".gate-pull-"


def _sweep(parent: Path) -> None:
    """Remove staging directories of pulls that were killed (their lock is no longer held)."""
    with contextlib.suppress(OSError), os.scandir(parent) as it:
        entries = [e for e in it if e.name.startswith(_STAGING_PREFIX) and e.is_dir(follow_symlinks=False)]
    for entry in entries:
        lock = Path(entry.path) / ".lock"
        try:
            fd = os.open(lock, os.O_RDWR | os.O_NOFOLLOW)
        except OSError:
            # No lock file: a staging directory being created right now, or a foreign one.
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        os.close(fd)


@contextlib.contextmanager
def _staging(out: Path | None) -> Iterator[Path]:
    """A private directory beside ``out`` (one rename from it), locked while in use, removed on exit."""
    parent = out.absolute().parent if out is not None else Path(tempfile.gettempdir())
    parent.mkdir(parents=True, exist_ok=True)
    _sweep(parent)
    tmp = Path(tempfile.mkdtemp(prefix=_STAGING_PREFIX, dir=parent))
    fd = os.open(tmp / ".lock", os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        os.close(fd)


def verify_bundle(
    ref: str,
    policy: TrustPolicy,
    *,
    expected_contract_sha256: str,
    out: Path | None = None,
    force: bool = False,
    on_event: Callable[[dict[str, Any]], None] | None = None,
) -> VerifyResult:
    """Verify ``ref`` (see the module docstring); with ``out``, leave the verified bundle there.

    The bundle is pulled into a staging directory next to ``out`` and moved into
    place only after every check passed, so ``out`` never holds an unverified bundle.
    """
    policy.validate()
    if out is not None and out.exists():
        if out.is_symlink() or not out.is_dir():
            raise InputError(f"--out {out} exists and is not a directory")
        if any(out.iterdir()) and not force:
            raise InputError(f"--out {out} is not empty", hint="choose a new directory or pass --force")
    if not is_oci_ref(ref):
        local = Path(ref)
        if not local.is_dir():
            raise InputError(f"{ref} is neither an oci:// / oci-layout:// reference nor a bundle directory")
        files = {f.path: f.sha256 for f in list_files(local)}
        signed = verify_signature(local, policy)
        diff = layer_diff(signed.files, files)
        if diff:
            raise GateFailure("the bundle differs from what was signed: " + "; ".join(diff))
        verdict, contract_sha = _check_verdict(local, expected_contract_sha256)
        reports, md = _reports(local)
        return VerifyResult(str(local), None, signed.signer, contract_sha, verdict, files, reports, md, None)

    oref = parse_ref(ref)
    with _staging(out) as tmp:
        stage = tmp / "bundle"
        pulled = pull(
            oref,
            stage,
            verify=lambda raw: verify_signature_bytes(raw, policy, scratch=tmp),
            on_event=on_event,
        )
        # The layers streamed against the signed digests; verify again over the files
        # themselves, so what is handed on is what model-signing itself accepts.
        signed = verify_signature(stage, policy)
        diff = layer_diff(signed.files, {f.path: f.sha256 for f in list_files(stage)})
        if diff:
            raise GateFailure("the pulled bundle differs from what was signed: " + "; ".join(diff))
        verdict, contract_sha = _check_verdict(stage, expected_contract_sha256)
        reports, md = _reports(stage)
        final: Path | None = None
        if out is not None:
            if out.exists():
                shutil.rmtree(out)
            os.replace(stage, out)
            final = out
        return VerifyResult(
            pulled.ref, pulled.digest, signed.signer, contract_sha, verdict, pulled.layers, reports, md, final
        )


def required_gates() -> tuple[str, ...]:
    """The gates every released bundle must have passed."""
    return REQUIRED_GATES
