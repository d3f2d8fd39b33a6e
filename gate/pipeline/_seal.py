"""The end of a release: the verdict sealed to the bundle's bytes, then signed, then published."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from gate.bundle import REPORTS, RUN_RECORD, Verdict, read_json, staged_digest, staged_files
from gate.console import atomic_write_json
from gate.digests import file_sha256
from gate.errors import Error, GateFailure
from gate.evidence import PathScrubber, bundled_contract_digest, released_run_record
from gate.pipeline._events import _Emitter
from gate.pipeline._request import EventSink, ReleaseResult
from gate.pipeline._staging import _replace_dir
from gate.pipeline._tools import release_tools
from gate.signing import SigningConfig, sign_bundle


def _seal(
    verdict: Verdict,
    contract: Any,
    contract_sha: str,
    run_record: Any,
    raw_record: Any,
    fixes: list[str],
    bundle: Path,
    names: list[str],
    scrubber: PathScrubber,
) -> Verdict:
    """Bind the verdict to the bundle's bytes: scrubbed records, contract digest, tools, approval stop."""
    from gate.contract_files import contract_digest

    now_files = {n: file_sha256(p) for n, p in contract.referenced_files().items()}
    if contract_digest(contract.yaml_sha256, now_files) != contract_sha:
        raise GateFailure("the contract's referenced files changed while the gates ran; refusing to release")
    if bundled_contract_digest(bundle) != contract_sha:
        raise GateFailure("the bundled contract files are not those the gates ran under")
    for path in sorted((bundle / "gate" / "reports").iterdir()):
        scrubber.file(path)
    adapter_files = {n: file_sha256(bundle / n) for n in names}
    atomic_write_json(bundle / RUN_RECORD, released_run_record(raw_record, adapter_files, fixes, scrubber))
    reports = {
        name: data
        for name, rel in REPORTS.items()
        if (bundle / rel).is_file() and isinstance(data := read_json(bundle / rel), dict)
    }
    stopped_at, reason = verdict.stopped_at, verdict.reason
    if verdict.passed and contract.approval.required:
        stopped_at = "approval"
        reason = "every gate passed; the contract requires approval (gate release --approve BUNDLE)"
    sealed = verdict.model_copy(
        update={
            "passed": stopped_at is None,
            "stopped_at": stopped_at,
            "reason": reason,
            "contract": verdict.contract.model_copy(update={"sha256": contract_sha}),
            "tools": {**verdict.tools, **release_tools(run_record, reports)},
            "fixes": tuple(fixes),
            "approval_required": contract.approval.required,
        }
    )
    # Gate summaries and reasons quote error messages, which may name local files.
    sealed = Verdict.model_validate(scrubber.json(sealed.model_dump(mode="json")))
    return sealed.model_copy(update={"staged_digest": staged_digest(staged_files(bundle), sealed)})


def _sign(bundle: Path, signing: SigningConfig, emit: EventSink, *, into: Path) -> None:
    """Sign ``bundle`` and move it to ``into``; 'sign finished' means the signed bundle is in place."""
    emit({"event": "gate.start", "gate": "sign", "method": signing.method})
    started = time.monotonic()
    sign_bundle(bundle, signing)
    _replace_dir(bundle, into)
    emit(
        {
            "event": "gate.finish",
            "gate": "sign",
            "status": "passed",
            "seconds": round(time.monotonic() - started, 3),
            "signer": signing.describe(),
        }
    )


def _publish(
    verdict: Verdict,
    out_dir: Path,
    ref: Any,
    emit: _Emitter,
    publish: Any,
    *,
    resumed: bool,
) -> ReleaseResult:
    emit({"event": "gate.start", "gate": "publish", "target": str(ref)})
    started = time.monotonic()
    try:
        result = publish(out_dir, ref, on_event=emit)
    except Error as e:
        emit({"event": "gate.finish", "gate": "publish", "status": "error", "summary": e.message})
        raise
    emit(
        {
            "event": "gate.finish",
            "gate": "publish",
            "status": "passed",
            "seconds": round(time.monotonic() - started, 3),
            **result.to_dict(),
        }
    )
    emit({"event": "release.finish", "released": True, "ref": result.ref, "digest": result.digest})
    return ReleaseResult(verdict, out_dir, result.to_dict(), resumed, emit.events)
