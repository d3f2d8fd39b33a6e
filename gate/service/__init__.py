"""The gate service: the release pipeline behind an HTTP API, a durable queue and a web UI.

Run it with ``gate serve`` (uvicorn), or build the ASGI app yourself::

    from gate.service import Settings, create_app

    app = create_app(Settings(database_url="postgresql://gate@db/gate", workers=2))

Nothing here is imported by the rest of gate: ``gate check`` stays fast.
"""

from __future__ import annotations

from gate.service.app import create_app
from gate.service.settings import Settings, get_settings

__all__ = ["Settings", "create_app", "get_settings"]
