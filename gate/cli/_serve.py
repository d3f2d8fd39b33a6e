"""``gate serve``: the gatekeeper service (Litestar on uvicorn), or one of its admin actions."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "serve",
        help="run the gatekeeper service (API, queue workers, web UI)",
        description="Run the gate service. Settings come from GATE_SERVICE_* variables; flags override them.",
    )
    p.add_argument("--host", help="address to listen on (env GATE_SERVICE_HOST, default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (env GATE_SERVICE_PORT, default 8470)")
    p.add_argument("--db", help="sqlite:///PATH or postgresql://... (env GATE_SERVICE_DATABASE_URL)")
    p.add_argument("--data-dir", type=Path, help="uploads, bundles, logs (env GATE_SERVICE_DATA_DIR)")
    p.add_argument("--workers", type=int, help="worker processes (env GATE_SERVICE_WORKERS)")
    p.add_argument("--executor", choices=["local", "ray"], help="where jobs run (env GATE_SERVICE_EXECUTOR)")
    p.add_argument("--vllm-url", help="a running vLLM server for smoke and eval (env GATE_SERVICE_VLLM_URL)")
    p.add_argument(
        "--create-token",
        metavar="NAME:ROLE",
        help="create an API token (role read, submit, approve or admin), print it and exit",
    )
    p.add_argument("--migrate-only", action="store_true", help="upgrade the database schema and exit")
    p.add_argument("--json", action="store_true", help="JSON output for --create-token / --migrate-only")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gate.console import print_json
    from gate.errors import InputError
    from gate.service.db import migrate, sync_engine, sync_session
    from gate.service.settings import get_settings

    settings = get_settings()
    overrides: dict[str, Any] = {}
    for flag, field in (
        ("host", "host"),
        ("port", "port"),
        ("db", "database_url"),
        ("data_dir", "data_dir"),
        ("workers", "workers"),
        ("executor", "executor"),
        ("vllm_url", "vllm_url"),
    ):
        value = getattr(args, flag)
        if value is not None:
            overrides[field] = value
    settings = settings.with_(**overrides)
    migrate(settings)
    if args.migrate_only:
        if args.json:
            print_json({"database": settings.db_url.split("@")[-1], "migrated": True})
        return 0
    if args.create_token:
        from gate.service.auth import issue_token

        name, sep, role = args.create_token.rpartition(":")
        if not sep or not name:
            raise InputError(f"--create-token wants NAME:ROLE, got {args.create_token!r}")
        engine = sync_engine(settings)
        try:
            with sync_session(engine) as s:
                token = issue_token(s, name, role)
        finally:
            engine.dispose()
        if args.json:
            print_json({"name": name, "role": role, "token": token})
        else:
            print(token)
        return 0

    import uvicorn

    from gate.service.app import create_app

    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        timeout_graceful_shutdown=10,
        access_log=False,
    )
    return 0
