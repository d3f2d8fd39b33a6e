"""A release's events as server-sent events: every stored one, then live ones until the release is done."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from litestar.response import ServerSentEventMessage
from sqlalchemy import select

from gate.errors import InputError
from gate.service.models import TERMINAL_STATUSES, Event, Release
from gate.service.state import AppState

__all__ = ["event_stream", "last_event_id"]


def last_event_id(raw: str) -> int | None:
    """The SSE ``Last-Event-ID`` header as an event id; anything else is a 400 (never a 500)."""
    if not raw:
        return None
    if len(raw) > 19 or not raw.isascii() or not raw.isdigit():
        raise InputError(
            f"Last-Event-ID {raw[:40]!r} is not an event id (a decimal integer of at most 19 digits)"
        )
    return int(raw)


async def event_stream(st: AppState, release_id: int, after: int, follow: bool) -> AsyncIterator[Any]:
    """The events of ``release_id`` after event ``after``, polled with sessions of the stream's own;
    without ``follow`` (or once the release is done or awaiting approval) it ends with an ``end`` event."""
    last = after
    while True:
        async with st.sessions() as s:
            rows = (
                await s.scalars(
                    select(Event)
                    .where(Event.release_id == release_id, Event.id > last)
                    .order_by(Event.id)
                    .limit(500)
                )
            ).all()
            status = await s.scalar(select(Release.status).where(Release.id == release_id))
        for ev in rows:
            last = ev.id
            yield ServerSentEventMessage(data=json.dumps(ev.data, default=str), event=ev.kind, id=ev.id)
        if not rows and (not follow or status in TERMINAL_STATUSES or status == "awaiting_approval"):
            yield ServerSentEventMessage(data=json.dumps({"event": "end", "status": status}), event="end")
            return
        if not rows:
            await asyncio.sleep(0.5)
