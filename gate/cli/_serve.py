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
    p.add_argument(
        "--processes",
        type=int,
        help="HTTP processes (env GATE_SERVICE_PROCESSES, default 1); queue workers are not multiplied",
    )
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


# Modules of the service extra ``gate serve`` cannot start without.
_SERVICE_MODULES = ("litestar", "uvicorn", "sqlalchemy", "greenlet", "aiosqlite", "alembic", "psycopg", "jwt")


def _distribution() -> str:
    from importlib.metadata import packages_distributions

    return next(iter(packages_distributions().get("gate", [])), "gate")


def _require_service_extra() -> None:
    """One line naming what to install when the service extra is missing (not an ImportError traceback)."""
    import importlib

    from gate.errors import InputError

    missing = []
    for name in _SERVICE_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise InputError(
            f"gate serve needs the service extra (missing: {', '.join(missing)}): "
            f"pip install '{_distribution()}[service]'"
        )


def run(args: argparse.Namespace) -> int:
    _require_service_extra()
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
        ("processes", "processes"),
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

    if settings.processes < 1:
        raise InputError(f"--processes must be at least 1, got {settings.processes}")
    from gate.service.app import serve

    serve(settings)
    return 0
