"""What people and CI do to a release: submit, approve, reject, retry. The API and the UI both call these.

Each runs in the request's session and commits once: the status change, the job it
queues, the audit entry and the event land together or not at all, and the
status change is a conditional UPDATE, so two approvers clicking at once queue
one publish job.
"""

from __future__ import annotations

from pathlib import Path

from litestar.exceptions import ClientException, PermissionDeniedException
from litestar.status_codes import HTTP_409_CONFLICT
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from gate.contract import Contract
from gate.service.auth import Principal
from gate.service.domain.queries import check_id
from gate.service.models import AuditEntry, Channel, Event, Job, Release, utcnow
from gate.service.settings import Settings

__all__ = ["Conflict", "approve", "channels_of", "create_release", "promote", "reject", "retry"]


class Conflict(ClientException):
    """409: the version exists, or the release is not in the state the action needs."""

    status_code = HTTP_409_CONFLICT


def _target(settings: Settings, contract: Contract, name: str, version: str) -> str:
    if settings.publish.target_prefix:
        return f"{settings.publish.target_prefix.rstrip('/')}/{name}:{version}"
    return contract.publish.target


async def create_release(
    s: AsyncSession,
    settings: Settings,
    who: Principal,
    *,
    name: str,
    version: str,
    contract: Contract,
    run_dir: Path,
    source: str,
) -> int:
    """Insert the release with its job, audit entry and first event; 409 if the version exists."""
    release = Release(
        name=name,
        version=version,
        status="queued",
        contract_name=contract.name,
        contract_path=str(contract.source_path),
        contract_sha256=contract.sha256,
        approval_required=contract.approval.required,
        source_kind=source,
        run_dir=str(run_dir),
        target=_target(settings, contract, name, version),
        submitted_by=who.name,
    )
    try:
        s.add(release)
        await s.flush()
        s.add(Job(release_id=release.id, kind="release", status="queued", max_attempts=settings.max_attempts))
        s.add(
            AuditEntry(
                actor=who.name,
                action="submitted",
                release_id=release.id,
                name=name,
                version=version,
                detail={
                    "contract": contract.name,
                    "source": source,
                    "contract_sha256": contract.sha256,
                    "target": release.target,
                },
            )
        )
        s.add(
            Event(
                release_id=release.id,
                kind="submitted",
                data={"event": "submitted", "by": who.name, "source": source},
            )
        )
        await s.commit()
    except IntegrityError as e:
        await s.rollback()
        raise Conflict(f"release {name} {version} already exists") from e
    return release.id


async def _move(s: AsyncSession, release_id: int, *, from_: str, action: str, **values: object) -> Release:
    """Move the release from status ``from_`` (conditional UPDATE) or raise 409 naming its status."""
    check_id(release_id)
    res = await s.execute(
        update(Release)
        .where(Release.id == release_id, Release.status == from_)
        .values(updated_at=utcnow(), **values)
        .returning(Release)
    )
    row = res.scalar_one_or_none()
    if row is None:
        current = await s.get(Release, release_id)
        if current is None:
            from litestar.exceptions import NotFoundException

            raise NotFoundException(f"no release {release_id}")
        raise Conflict(
            f"release {release_id} is {current.status}, not {from_.replace('_', ' ')}: cannot {action}"
        )
    return row


def _audit(s: AsyncSession, r: Release, who: Principal, action: str, **detail: object) -> None:
    s.add(
        AuditEntry(
            actor=who.name,
            action=action,
            release_id=r.id,
            name=r.name,
            version=r.version,
            detail=dict(detail),
        )
    )


async def approve(s: AsyncSession, settings: Settings, who: Principal, release_id: int) -> None:
    """Approve a release whose gates all passed: a publish job is queued (never by its own submitter)."""
    check_id(release_id)
    current = await s.get(Release, release_id)
    if current is not None and current.submitted_by == who.name and who.role != "admin":
        raise PermissionDeniedException(
            f"{who.name} submitted release {release_id} and cannot also approve it"
        )
    r = await _move(
        s, release_id, from_="awaiting_approval", action="approve it", status="queued", approved_by=who.name
    )
    s.add(Job(release_id=release_id, kind="publish", status="queued", max_attempts=settings.max_attempts))
    _audit(s, r, who, "approved", contract_sha256=r.contract_sha256)
    s.add(Event(release_id=release_id, kind="approved", data={"event": "approved", "by": who.name}))
    await s.commit()


async def reject(s: AsyncSession, who: Principal, release_id: int) -> None:
    """Reject a release awaiting approval: it is never published."""
    r = await _move(s, release_id, from_="awaiting_approval", action="reject it", status="rejected")
    _audit(s, r, who, "rejected")
    s.add(
        Event(
            release_id=release_id,
            kind="finished",
            data={"event": "finished", "status": "rejected", "by": who.name},
        )
    )
    await s.commit()


async def retry(s: AsyncSession, settings: Settings, who: Principal, release_id: int) -> None:
    """Run an ``error`` release again under the same version (an outage must not use the version up).

    A release that had been approved resumes with its publish job; any other runs its gates again.
    """
    r = await _move(s, release_id, from_="error", action="retry it", status="queued", error=None)
    kind = "publish" if r.approved_by else "release"
    s.add(Job(release_id=release_id, kind=kind, status="queued", max_attempts=settings.max_attempts))
    _audit(s, r, who, "retried", job=kind)
    s.add(
        Event(release_id=release_id, kind="retried", data={"event": "retried", "by": who.name, "job": kind})
    )
    await s.commit()


async def promote(s: AsyncSession, settings: Settings, who: Principal, release_id: int, channel: str) -> str:
    """Point ``channel`` of the release's adapter name at it: verify, move the OCI tag, record and audit.

    Returns the channel's reference. The verification and the tag move run
    without a transaction open; the row and its audit entry are written after
    the tag moved (the registry is the truth a serving team pulls from).
    """
    import anyio

    from gate.service.channels import CHANNELS
    from gate.service.channels import promote as move_tag

    if channel not in CHANNELS:
        from gate.errors import InputError

        raise InputError(f"unknown channel {channel[:40]!r}", hint="one of " + ", ".join(CHANNELS))
    check_id(release_id)
    r = await s.get(Release, release_id)
    if r is None:
        from litestar.exceptions import NotFoundException

        raise NotFoundException(f"no release {release_id}")
    if r.status != "published" or not r.digest:
        raise Conflict(f"release {release_id} is {r.status}, not published: cannot promote it")
    name, version, target, digest, contract = r.name, r.version, r.target, r.digest, r.contract_sha256
    await s.rollback()
    ref = await anyio.to_thread.run_sync(lambda: move_tag(settings, target, digest, contract, channel))
    row = await s.scalar(select(Channel).where(Channel.name == name, Channel.channel == channel))
    previous = row.release_id if row else None
    if row is None:
        s.add(Channel(name=name, channel=channel, release_id=release_id, digest=digest, moved_by=who.name))
    else:
        row.release_id, row.digest, row.moved_by, row.moved_at = release_id, digest, who.name, utcnow()
    s.add(
        AuditEntry(
            actor=who.name,
            action="promoted",
            release_id=release_id,
            name=name,
            version=version,
            digest=digest,
            detail={"channel": channel, "ref": ref, "previous_release": previous, "verified": True},
        )
    )
    s.add(
        Event(
            release_id=release_id, kind="promoted", data={"event": "promoted", "channel": channel, "ref": ref}
        )
    )
    await s.commit()
    return ref


async def channels_of(s: AsyncSession, name: str) -> dict[int, list[str]]:
    """Release id -> the channel tags of ``name`` pointing at it."""
    out: dict[int, list[str]] = {}
    rows = await s.execute(select(Channel.release_id, Channel.channel).where(Channel.name == name))
    for rid, channel in rows.tuples():
        out.setdefault(rid, []).append(channel)
    return out
