"""What the running app holds: settings, database engine, reader, OIDC verifier, metrics, worker processes."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from typing import Any

from litestar import Request
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from gate.service.auth import OIDCVerifier
from gate.service.metrics import Metrics
from gate.service.reader import Reader
from gate.service.settings import Settings

__all__ = ["AppState", "app_state"]


@dataclass
class AppState:
    """Shared objects of one app instance (kept in ``app.state.gate``)."""

    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    metrics: Metrics
    #: The hot reads (token lookup, status read, list page, health).
    reader: Reader
    oidc: OIDCVerifier | None = None
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)


def app_state(request: Request[Any, Any, Any]) -> AppState:
    """The :class:`AppState` of the app serving ``request``."""
    st: AppState = request.app.state.gate
    return st
