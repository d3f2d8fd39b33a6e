"""The Litestar application: ``create_app(settings)``."""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
from jinja2 import Environment, FileSystemLoader, select_autoescape
from litestar import Litestar, Request, Response
from litestar.exceptions import HTTPException
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, YamlRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.template import TemplateConfig

from gate import __version__
from gate.errors import Error, GateFailure, InputError, ServerError
from gate.service.archives import ArchiveError
from gate.service.auth import OIDCVerifier
from gate.service.bodies import BoundedRequest
from gate.service.db import async_engine, async_sessions, migrate, sqlite_file, sync_engine
from gate.service.domain.audit import AuditController
from gate.service.domain.contracts import ContractController
from gate.service.domain.pilots import PilotController, PilotUIController
from gate.service.domain.releases import ReleaseController
from gate.service.domain.resolutions import ResolutionController
from gate.service.domain.system import RunController, SystemController, TokenController
from gate.service.domain.ui import LoginController, UIController
from gate.service.guards import TokenAuthMiddleware
from gate.service.metrics import Metrics, metrics_middleware
from gate.service.queue import recover
from gate.service.reader import Reader
from gate.service.settings import Settings, get_settings
from gate.service.state import AppState

__all__ = ["create_app", "http_app", "serve"]

log = logging.getLogger("gate.service")
_TEMPLATES = Path(__file__).resolve().parent / "templates"


def _gate_error(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    """Bad input is a 400 naming the problem; a fault of the server or of a tool it ran is a 5xx."""
    assert isinstance(exc, Error)
    if isinstance(exc, InputError):
        code = 400
    elif isinstance(exc, GateFailure):
        code = 422  # the artifact was judged and refused (e.g. it does not verify): not a server fault
    else:
        code = 502 if isinstance(exc, ServerError) else 500
    body: dict[str, Any] = {"status_code": code, "detail": exc.message}
    if exc.hint:
        body["hint"] = exc.hint
    if isinstance(exc, ArchiveError):
        body["error"] = "bad_archive"
    elif code >= 500:
        log.error("%s %s: %s", request.method, request.url.path, exc.diagnostics())
        body["error"] = "server_fault"
    return Response(body, status_code=code)


async def _log_fault(exc: BaseException, scope: Any) -> None:
    """A fault of the server itself (not a refusal): logged with its traceback, answered 500."""
    if isinstance(exc, HTTPException | Error):
        return
    log.error("%s %s failed", scope.get("method"), scope.get("path"), exc_info=exc)


def _start_worker(settings: Settings, index: int) -> subprocess.Popen[bytes]:
    logs = settings.data_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with open(logs / f"worker-{index}.log", "ab") as fh:
        # Same process group as the server: whatever kills the server's group kills the workers.
        return subprocess.Popen(
            [sys.executable, "-m", "gate.service.worker"],
            env={**os.environ, **settings.to_env()},
            stdin=subprocess.DEVNULL,
            stdout=fh,
            stderr=subprocess.STDOUT,
        )


async def _supervise(settings: Settings, state: AppState) -> None:
    """Restart a worker that died (its job, if any, is recovered by the queue: never lost)."""
    while True:
        await anyio.sleep(5.0)
        for i, p in enumerate(state.workers):
            if p.poll() is not None:
                log.warning("worker %d exited with %s; starting a new one", i, p.returncode)
                state.workers[i] = _start_worker(settings, i)


def _stop_workers(procs: list[subprocess.Popen[bytes]], grace: float = 20.0) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=5)


def _recover_at_start(settings: Settings) -> int:
    engine = sync_engine(settings)
    try:
        return recover(engine, settings.lease_s)
    finally:
        engine.dispose()


def create_app(
    settings: Settings | None = None, *, start_workers: bool = True, prepare: bool = True
) -> Litestar:
    """The gate service app: migrations and job recovery run at startup (``prepare``), workers beside it."""
    settings = settings or get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = async_engine(settings)
    metrics = Metrics()
    sessions = async_sessions(engine)
    state = AppState(
        settings=settings,
        engine=engine,
        sessions=sessions,
        metrics=metrics,
        reader=Reader(sessions, engine.dialect, sqlite_file(settings)),
        oidc=OIDCVerifier(settings.oidc) if settings.oidc else None,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        if prepare:
            await anyio.to_thread.run_sync(migrate, settings)
            n = await anyio.to_thread.run_sync(_recover_at_start, settings)
            if n:
                log.warning("recovered %d job(s) interrupted by the last shutdown", n)
        async with anyio.create_task_group() as tg:
            if start_workers and settings.workers > 0:
                state.workers = [_start_worker(settings, i) for i in range(settings.workers)]
                tg.start_soon(_supervise, settings, state)
            # What startup built lives as long as the process: the collector need not walk it again
            # (a full collection over it is a pause every request in flight waits for).
            gc.collect()
            gc.freeze()
            try:
                yield
            finally:
                tg.cancel_scope.cancel()
        await anyio.to_thread.run_sync(_stop_workers, state.workers)
        state.reader.close()
        await engine.dispose()

    env = Environment(
        loader=FileSystemLoader(str(_TEMPLATES)),
        autoescape=select_autoescape(["html", "j2"], default_for_string=True, default=True),
    )
    app = Litestar(
        route_handlers=[
            SystemController,
            ReleaseController,
            AuditController,
            ResolutionController,
            ContractController,
            RunController,
            TokenController,
            LoginController,
            UIController,
            PilotController,
            PilotUIController,
        ],
        lifespan=[lifespan],
        middleware=[
            metrics_middleware(metrics),
            DefineMiddleware(TokenAuthMiddleware, exclude=["^/health$"]),
        ],
        exception_handlers={Error: _gate_error},
        request_class=BoundedRequest,
        after_exception=[_log_fault],
        template_config=TemplateConfig(engine=JinjaTemplateEngine.from_environment(env)),
        openapi_config=OpenAPIConfig(
            title="gate",
            version=__version__,
            description="Release and serving-handoff gatekeeper for fine-tuned LLM adapters.",
            path="/schema",
            components=Components(
                security_schemes={
                    "bearer": SecurityScheme(
                        type="http", scheme="bearer", description="API token or GitHub Actions OIDC token"
                    )
                }
            ),
            security=[{"bearer": []}],
            # Only the schema itself: the HTML viewers would pull their JavaScript from a CDN.
            render_plugins=[JsonRenderPlugin(), YamlRenderPlugin()],
        ),
        debug=False,
    )
    app.state.gate = state
    return app


def http_app() -> Litestar:
    """One HTTP process of ``gate serve --processes N`` (uvicorn's factory): requests only.

    Its parent ran the migrations and the recovery and owns the queue's workers, so
    N processes serve HTTP while the queue stays exactly as with one.
    """
    return create_app(get_settings(), start_workers=False, prepare=False)


def _supervise_sync(
    settings: Settings, workers: list[subprocess.Popen[bytes]], stop: threading.Event
) -> None:
    while not stop.wait(5.0):
        for i, p in enumerate(workers):
            # A worker that died as the server is stopping is not restarted.
            if p.poll() is not None and not stop.wait(1.0):
                log.warning("worker %d exited with %s; starting a new one", i, p.returncode)
                workers[i] = _start_worker(settings, i)


def serve(settings: Settings) -> None:
    """Run the service until it is stopped: one process, or ``settings.processes`` HTTP processes."""
    import uvicorn

    common: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level,
        "timeout_graceful_shutdown": 10,
        "access_log": False,
    }
    if settings.processes <= 1:
        uvicorn.run(create_app(settings), **common)
        return
    migrate(settings)
    if n := _recover_at_start(settings):
        log.warning("recovered %d job(s) interrupted by the last shutdown", n)
    # The HTTP processes are spawned afresh and read their settings from the environment.
    os.environ.update(settings.to_env())
    workers = [_start_worker(settings, i) for i in range(settings.workers)]
    stop = threading.Event()
    supervisor = threading.Thread(target=_supervise_sync, args=(settings, workers, stop), daemon=True)
    supervisor.start()
    try:
        uvicorn.run("gate.service.app:http_app", factory=True, workers=settings.processes, **common)
    finally:
        stop.set()
        _stop_workers(workers)
