"""What a worker does with a claimed job: run THE release pipeline and record everything.

The pipeline is :func:`gate.pipeline.run_release`, the same code ``gate release``
runs. Its events are stored as they arrive (the SSE stream and the web UI read
them); each gate's state and report land in ``gate_results``; the outcome is
recorded in one transaction together with its audit entry, guarded by the
release's current status, so a retried job can never record "published" twice.
"""

from __future__ import annotations

import json
import logging
import traceback
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select, update

from gate.errors import Error, GateFailure, InputError
from gate.service.db import sync_session
from gate.service.models import TERMINAL_STATUSES, AuditEntry, Event, GateResult, Release, utcnow
from gate.service.settings import Settings

__all__ = ["EventRecorder", "execute_job", "release_out_dir"]

log = logging.getLogger("gate.service")

_MAX_EVENT_BYTES = 256 << 10


def release_out_dir(settings: Settings, release_id: int) -> Path:
    """Where the pipeline writes a release's bundle and reports."""
    return settings.data_dir / "releases" / str(release_id) / "out"


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))


class EventRecorder:
    """``on_event`` callback for the pipeline: stores each event and keeps ``gate_results`` current."""

    def __init__(self, engine: Engine, release_id: int) -> None:
        self.engine = engine
        self.release_id = release_id

    def __call__(self, event: dict[str, Any]) -> None:
        data = _jsonable(event)
        if not isinstance(data, dict):
            data = {"value": data}
        if len(json.dumps(data)) > _MAX_EVENT_BYTES:
            data = {k: v for k, v in data.items() if k != "report"} | {"truncated": True}
        kind = str(data.get("event") or data.get("type") or "event")[:64]
        with sync_session(self.engine) as s:
            s.add(Event(release_id=self.release_id, kind=kind, data=data))
            gate = data.get("gate")
            status = "running" if kind == "gate.start" else data.get("status")
            if isinstance(gate, str) and isinstance(status, str):
                _upsert_gate(s, self.release_id, gate, status, data.get("seconds"), data.get("report"))


def _upsert_gate(s: Any, release_id: int, gate: str, status: str, seconds: Any, report: Any) -> None:
    row = s.scalar(select(GateResult).where(GateResult.release_id == release_id, GateResult.gate == gate))
    if row is None:
        row = GateResult(release_id=release_id, gate=gate, status=status)
        s.add(row)
    row.status = status[:16]
    row.updated_at = utcnow()
    if isinstance(seconds, int | float):
        row.seconds = float(seconds)
    if isinstance(report, dict):
        row.report = report


def _transition(engine: Engine, release_id: int, *, from_: set[str], to: str, **values: Any) -> bool:
    """Move a release between statuses atomically; False if it was not in ``from_``."""
    with sync_session(engine) as s:
        res = s.execute(
            update(Release)
            .where(Release.id == release_id, Release.status.in_(from_))
            .values(status=to, updated_at=utcnow(), **values)
        )
        return bool(res.rowcount == 1)  # type: ignore[attr-defined]


def _finish(
    engine: Engine,
    release: Release,
    *,
    status: str,
    actor: str,
    action: str,
    digest: str | None = None,
    error: str | None = None,
    verdict: dict[str, Any] | None = None,
) -> bool:
    """Record the outcome and its audit entry in one transaction (once: guarded by the current status)."""
    with sync_session(engine) as s:
        res = s.execute(
            update(Release)
            .where(Release.id == release.id, Release.status.notin_(TERMINAL_STATUSES))
            .values(status=status, updated_at=utcnow(), digest=digest, error=error, verdict=verdict)
        )
        if res.rowcount != 1:  # type: ignore[attr-defined]
            return False
        s.add(
            AuditEntry(
                actor=actor,
                action=action,
                release_id=release.id,
                name=release.name,
                version=release.version,
                digest=digest,
                detail={"status": status, **({"error": error} if error else {})},
            )
        )
        s.add(
            Event(
                release_id=release.id,
                kind="finished",
                data={"event": "finished", "status": status, "digest": digest, "error": error},
            )
        )
    return True


def _record_reports(engine: Engine, release_id: int, out_dir: Path) -> None:
    """Store each gate report the pipeline wrote into the bundle (bounded reads, never through links)."""
    from gate.bundle import REPORTS, read_json

    for gate, rel in REPORTS.items():
        path = out_dir / rel
        if path.is_symlink() or not path.is_file():
            continue
        try:
            report = read_json(path)
        except Error:
            continue
        if not isinstance(report, dict):
            continue
        with sync_session(engine) as s:
            q = select(GateResult).where(GateResult.release_id == release_id, GateResult.gate == gate)
            row = s.scalar(q)
            status = row.status if row else ("passed" if report.get("passed") else "failed")
            _upsert_gate(s, release_id, gate, status, None, report)


def _signing(settings: Settings) -> Any:
    import os

    from gate.signing import SigningConfig

    return SigningConfig(
        method=settings.publish.sign_method,  # type: ignore[arg-type]
        private_key=settings.publish.sign_key,
        key_password=os.environ.get("GATE_SIGN_KEY_PASSWORD") or None,
    )


def _request(settings: Settings, release: Release, out_dir: Path) -> Any:
    """The ReleaseRequest ``gate release`` would build for this release."""
    from gate.pipeline import ReleaseRequest

    return ReleaseRequest(
        run_dir=Path(release.run_dir),
        contract_path=Path(release.contract_path),
        target=release.target,
        signing=_signing(settings),
        out_dir=out_dir,
        base_dir=settings.base_dir,
        server_url=settings.vllm_url or None,
    )


def _approve(settings: Settings, release: Release, out_dir: Path, on_event: Any) -> Any:
    """Sign and publish the staged, gated bundle with the approval in its verdict (no gate re-runs)."""
    from gate.approve import Approver, approve_release

    who = str(release.approved_by)
    kind, _, subject = who.partition(":")
    staged = (release.verdict or {}).get("verdict", {}).get("staged_digest")
    return approve_release(
        out_dir,
        Approver(
            by=who,
            via="oidc" if kind == "oidc" else "token",
            subject=subject or who,
            at=release.updated_at.isoformat() if release.updated_at else None,
        ),
        _signing(settings),
        release.target,
        # The digest stored when the gates ran, not the one in the (writable) staged directory.
        expected_digest=staged if isinstance(staged, str) else None,
        on_event=on_event,
    )


def execute_job(settings: Settings, engine: Engine, job_id: int, release_id: int, kind: str) -> None:
    """Run one claimed job to its end; the release's outcome is recorded before this returns."""
    from gate.pipeline import run_release

    with sync_session(engine) as s:
        release = s.get_one(Release, release_id)
        s.expunge(release)
    if release.status in TERMINAL_STATUSES:
        return
    recorder = EventRecorder(engine, release_id)
    out_dir = release_out_dir(settings, release_id)
    # A "publish" job exists only after a person approved: the gated bundle is signed and published.
    approved = kind == "publish"
    start_status = "publishing" if approved else "running"
    _transition(engine, release_id, from_={"queued", "running", "publishing"}, to=start_status)
    recorder({"event": "job.start", "job": job_id, "kind": kind})
    try:
        if approved:
            result = _approve(settings, release, out_dir, recorder)
        else:
            result = run_release(_request(settings, release, out_dir), on_event=recorder)
    except GateFailure as e:
        _record_reports(engine, release_id, out_dir)
        _finish(
            engine, release, status="failed", actor="gate-service", action="failed", error=e.diagnostics()
        )
        return
    except InputError as e:
        # The submission itself is unusable (its run or contract): a verdict, not an outage.
        _record_reports(engine, release_id, out_dir)
        _finish(
            engine, release, status="failed", actor="gate-service", action="failed", error=e.diagnostics()
        )
        return
    except Error as e:
        # A server or tool fault: the release is `error`, and may be retried under the same version.
        _record_reports(engine, release_id, out_dir)
        _finish(
            engine, release, status="error", actor="gate-service", action="errored", error=e.diagnostics()
        )
        return
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as e:
        log.exception("release %s: pipeline crashed", release_id)
        tb = traceback.format_exception_only(type(e), e)[-1].strip()
        _finish(
            engine,
            release,
            status="error",
            actor="gate-service",
            action="errored",
            error=f"internal error in the release pipeline: {tb}",
        )
        return
    _record_reports(engine, release_id, out_dir)
    data = _jsonable(result.to_dict())
    verdict = result.verdict
    if result.passed:
        digest = (result.published or {}).get("digest")
        _finish(
            engine,
            release,
            status="published",
            actor="gate-service",
            action="published",
            digest=digest,
            verdict=data,
        )
        return
    if verdict.stopped_at == "approval":
        with sync_session(engine) as s:
            s.execute(
                update(Release)
                .where(Release.id == release_id, Release.status == "running")
                .values(status="awaiting_approval", verdict=data, updated_at=utcnow())
            )
            s.add(
                Event(
                    release_id=release_id,
                    kind="awaiting_approval",
                    data={
                        "event": "awaiting_approval",
                        "message": "every gate passed; a person must approve",
                    },
                )
            )
        return
    # A gate that could not reach a verdict (its server died, a tool crashed) is an outage, not a failure.
    stopped = verdict.gate(verdict.stopped_at) if verdict.stopped_at else None
    errored = stopped is not None and stopped.status == "error"
    _finish(
        engine,
        release,
        status="error" if errored else "failed",
        actor="gate-service",
        action="errored" if errored else "failed",
        error=str(verdict.reason or "a gate failed"),
        verdict=data,
    )
