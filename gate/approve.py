"""Approval: a person signs off on a staged, already-gated bundle; gate signs and publishes those bytes.

A contract with ``approval.required: true`` makes :func:`gate.pipeline.run_release`
stop at ``approval``: the bundle is staged (unsigned, every gate passed) and its
verdict records ``staged_digest``, a digest over every staged file and the
verdict's findings. :func:`approve_release` recomputes that digest, refuses if
any byte changed since the gates ran, writes who approved what into the verdict
(:class:`gate.bundle.ApprovalRecord`) and signs and publishes the bundle. No
gate runs again. ``gate release --approve BUNDLE`` and the service's approve
endpoint both call it.

Example::

    approve_release(Path("gate-release/run1"), Approver(by="alice", via="cli", subject="alice"),
                    SigningConfig(method="key", private_key=Path("k.pem")), "oci://127.0.0.1:5000/a:v1")
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from gate.bundle import (
    GATE_DIR,
    SIGNATURE,
    VERDICT,
    ApprovalRecord,
    Verdict,
    read_verdict,
    staged_digest,
    staged_files,
)
from gate.console import atomic_write_json
from gate.digests import files_digest
from gate.errors import GateFailure, InputError
from gate.evidence import bundle_problems
from gate.pipeline._events import _Emitter, _now
from gate.pipeline._request import EventSink, ReleaseResult
from gate.pipeline._seal import _publish, _sign
from gate.pipeline._staging import _release_lock, _resumable
from gate.signing import SigningConfig

__all__ = ["Approver", "approve_release"]


@dataclass(frozen=True)
class Approver:
    """Who approves: their identity and the credential they approved with."""

    by: str
    via: Literal["token", "oidc", "cli"]
    subject: str
    issuer: str | None = None
    #: When they approved (default: now); the service passes the time of the request.
    at: str | None = None


def approve_release(
    staged: Path,
    approver: Approver,
    signing: SigningConfig,
    target: str,
    *,
    expected_digest: str | None = None,
    on_event: EventSink | None = None,
) -> ReleaseResult:
    """Sign and publish the staged bundle at ``staged`` with ``approver``'s approval in its verdict.

    ``expected_digest`` is the staged digest the approver was shown (the service
    keeps it from when the gates ran); the bundle's recorded and recomputed
    digests must both equal it. Raises GateFailure when the bytes changed and
    InputError when the bundle is not awaiting approval.
    """
    from gate.oci import parse_ref, publish

    if not approver.by.strip() or not approver.subject.strip():
        raise InputError("an approval must name who approves", hint="pass --approver NAME")
    ref = parse_ref(target)
    if ref.digest or not ref.tag:
        raise InputError(f"--to must name a tag: {target}", hint="e.g. oci://HOST/REPO:v1")
    signing.validate()
    emit = _Emitter(on_event)
    staged = staged.resolve()
    with _release_lock(staged):
        verdict = read_verdict(staged)
        if verdict.approval is not None and (staged / SIGNATURE).is_file():
            # Approved and signed before (a crash or a lost connection before publishing): publish only.
            if not _resumable(staged, signing, verdict.adapter_digest, verdict.contract.sha256):
                raise GateFailure(
                    f"{staged} is approved and signed, but not verifiably by this signing key",
                    hint="publish it with the key that signed it, or release the run again",
                )
            emit({"event": "release.resume", "bundle": str(staged), "reason": "approved and signed already"})
            return _publish(verdict, staged, ref, emit, publish, resumed=True)
        if verdict.stopped_at != "approval" or verdict.approval is not None:
            raise InputError(
                f"{staged} is not awaiting approval (stopped at {verdict.stopped_at or 'nothing'})",
                hint="approve the bundle a release left at 'approval'",
            )
        if (staged / SIGNATURE).exists():
            raise GateFailure(f"{staged} awaits approval but holds a signature; refusing to approve it")
        gated = verdict.model_copy(update={"passed": True, "stopped_at": None, "reason": None})
        problems = [p for p in gated.problems() if "approval" not in p]
        if problems:
            raise GateFailure(f"{staged} did not pass its gates: " + "; ".join(problems))
        _check_unchanged(staged, verdict, expected_digest)
        record = ApprovalRecord(
            by=approver.by,
            via=approver.via,
            subject=approver.subject,
            issuer=approver.issuer,
            at=approver.at or _now(),
            adapter_digest=verdict.adapter_digest,
            staged_digest=str(verdict.staged_digest),
        )
        approved = gated.model_copy(update={"approval": record})
        if still := approved.problems():
            raise GateFailure("the approved verdict does not allow a release: " + "; ".join(still))
        emit({"event": "release.approved", **record.model_dump(mode="json")})
        work = Path(tempfile.mkdtemp(prefix=f".{staged.name}.staging-", dir=staged.parent))
        try:
            bundle = work / "bundle"
            shutil.copytree(staged, bundle, symlinks=True)
            _check_unchanged(bundle, verdict, expected_digest)  # the copy is what gets signed
            atomic_write_json(bundle / VERDICT, approved.model_dump(mode="json"))
            _sign(bundle, signing, emit, into=staged)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return _publish(approved, staged, ref, emit, publish, resumed=False)


def _check_unchanged(root: Path, verdict: Verdict, expected: str | None) -> None:
    if verdict.staged_digest is None:
        raise GateFailure(f"{root}: the verdict records no staged digest; re-run the release")
    if expected is not None and expected != verdict.staged_digest:
        raise GateFailure(
            f"the staged bundle was re-staged: its verdict names {verdict.staged_digest}, "
            f"the approval was given for {expected}"
        )
    actual = staged_digest(staged_files(root), verdict)
    if actual != verdict.staged_digest:
        detail = bundle_problems(root, verdict)
        raise GateFailure(
            f"the staged bundle changed since the gates ran: its digest is {actual}, "
            f"the gates judged {verdict.staged_digest}" + (f" ({'; '.join(detail)})" if detail else ""),
            hint="release the run again; an approval covers exactly the bytes the gates judged",
        )
    adapter = [p.name for p in root.iterdir() if p.is_file() and p.name != GATE_DIR]
    if files_digest(root, adapter) != verdict.adapter_digest:
        raise GateFailure(f"the staged adapter files are not {verdict.adapter_digest}")
