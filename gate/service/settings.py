"""Service settings, read from ``GATE_SERVICE_*`` environment variables.

Every field has a default that works on one machine with no setup (SQLite under
gate's cache, one local worker). ``get_settings()`` reads the environment once;
tests build :class:`Settings` directly.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import yaml

from gate.envs import gate_home
from gate.errors import InputError

__all__ = [
    "ArchiveLimits",
    "ExecutorName",
    "OIDCRule",
    "OIDCSettings",
    "PublishSettings",
    "Settings",
    "get_settings",
]

ExecutorName = Literal["local", "ray"]
Role = Literal["read", "submit", "approve", "admin"]
ROLES: tuple[Role, ...] = ("read", "submit", "approve", "admin")


@dataclass(frozen=True)
class ArchiveLimits:
    """Bounds on an uploaded archive, checked while it streams in and while it unpacks."""

    #: Largest upload accepted, in bytes (the compressed archive as sent).
    max_upload_bytes: int = 1 << 30
    #: Largest total of unpacked file sizes.
    max_total_bytes: int = 4 << 30
    #: Most members (files and directories).
    max_files: int = 10_000
    #: Largest unpacked/compressed ratio: a zip or gzip bomb trips this before the disk fills.
    max_ratio: float = 200.0


@dataclass(frozen=True)
class OIDCRule:
    """Map GitHub Actions OIDC claims to a role: every given claim must match (``*`` globs allowed)."""

    role: Role
    repository: str
    ref: str = "*"


@dataclass(frozen=True)
class OIDCSettings:
    """Which OIDC tokens the service trusts (GitHub Actions by default)."""

    issuer: str = "https://token.actions.githubusercontent.com"
    audience: str = "gate"
    #: ``https://...`` URL, ``file://`` URL or plain path of the issuer's JWKS.
    jwks_url: str = "https://token.actions.githubusercontent.com/.well-known/jwks"
    rules: tuple[OIDCRule, ...] = ()
    algorithms: tuple[str, ...] = ("RS256",)
    leeway_s: int = 30

    @classmethod
    def from_file(cls, path: Path) -> OIDCSettings:
        """Read ``{issuer, audience, jwks_url, rules: [{role, repository, ref}]}`` from YAML or JSON."""
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as e:
            raise InputError(f"cannot read OIDC config {path}: {e}") from e
        if not isinstance(raw, dict):
            raise InputError(f"OIDC config {path} must be a mapping")
        rules = []
        for i, r in enumerate(raw.get("rules") or []):
            if not isinstance(r, dict) or r.get("role") not in ROLES or not r.get("repository"):
                raise InputError(
                    f"OIDC config {path}: rules[{i}] needs 'repository' and 'role' "
                    f"(one of {', '.join(ROLES)})"
                )
            rules.append(
                OIDCRule(role=r["role"], repository=str(r["repository"]), ref=str(r.get("ref", "*")))
            )
        known = {"issuer", "audience", "jwks_url", "rules", "algorithms", "leeway_s"}
        unknown = set(raw) - known
        if unknown:
            raise InputError(
                f"OIDC config {path}: unknown keys {sorted(unknown)}", hint=f"known: {sorted(known)}"
            )
        base = cls()
        return cls(
            issuer=str(raw.get("issuer", base.issuer)),
            audience=str(raw.get("audience", base.audience)),
            jwks_url=str(raw.get("jwks_url", base.jwks_url)),
            rules=tuple(rules),
            algorithms=tuple(raw.get("algorithms", base.algorithms)),
            leeway_s=int(raw.get("leeway_s", base.leeway_s)),
        )


@dataclass(frozen=True)
class PublishSettings:
    """How the worker signs and where it publishes (handed to the release pipeline)."""

    #: Registry prefix, e.g. ``127.0.0.1:5000/adapters``; a release goes to ``PREFIX/NAME:VERSION``.
    #: Empty: the contract's ``publish.target``.
    target_prefix: str = ""
    sign_method: str = "key"
    sign_key: Path | None = None
    #: Extra keyword arguments for the pipeline's request (JSON object), e.g. registry credentials.
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Settings:
    """Everything ``gate serve`` needs; see the module docstring for the environment variables."""

    data_dir: Path = field(default_factory=lambda: gate_home() / "service")
    #: SQLAlchemy URL; empty means SQLite at ``data_dir/gate.db``. ``postgresql://...`` uses psycopg 3.
    database_url: str = ""
    host: str = "127.0.0.1"
    port: int = 8470
    executor: ExecutorName = "local"
    workers: int = 1
    #: HTTP server processes (uvicorn workers); the queue's workers are started once, beside them.
    processes: int = 1
    #: Ray address; empty starts a local instance.
    ray_address: str = ""
    ray_num_cpus: int = 2
    #: GPUs a release job asks Ray for (smoke and eval boot vLLM).
    ray_num_gpus: float = 0.0
    archive: ArchiveLimits = field(default_factory=ArchiveLimits)
    #: Directories a submission may reference by path (runs already on the server).
    allowed_roots: tuple[Path, ...] = ()
    #: Extra directories searched for contracts by name, before the shipped ones.
    contracts_dirs: tuple[Path, ...] = ()
    #: A running vLLM server for smoke and eval (otherwise the pipeline boots one).
    vllm_url: str = ""
    base_dir: Path | None = None
    publish: PublishSettings = field(default_factory=PublishSettings)
    oidc: OIDCSettings | None = None
    #: A job whose worker has not reported for this long is considered dead.
    lease_s: float = 60.0
    heartbeat_s: float = 2.0
    poll_s: float = 0.5
    #: Runs of one job before it is failed (1 = never retried after an interruption).
    max_attempts: int = 2
    log_level: str = "info"

    @property
    def db_url(self) -> str:
        """The database URL, defaulting to SQLite in the data directory."""
        return self.database_url or f"sqlite:///{self.data_dir / 'gate.db'}"

    def with_(self, **changes: Any) -> Settings:
        """A copy with some fields changed."""
        return replace(self, **changes)

    def to_env(self) -> dict[str, str]:
        """Environment variables that make ``get_settings()`` in a child process return these settings."""
        env = {
            "GATE_SERVICE_DATA_DIR": str(self.data_dir),
            "GATE_SERVICE_DATABASE_URL": self.db_url,
            "GATE_SERVICE_HOST": self.host,
            "GATE_SERVICE_PORT": str(self.port),
            "GATE_SERVICE_EXECUTOR": self.executor,
            "GATE_SERVICE_WORKERS": str(self.workers),
            "GATE_SERVICE_PROCESSES": str(self.processes),
            "GATE_SERVICE_RAY_ADDRESS": self.ray_address,
            "GATE_SERVICE_RAY_NUM_CPUS": str(self.ray_num_cpus),
            "GATE_SERVICE_RAY_NUM_GPUS": str(self.ray_num_gpus),
            "GATE_SERVICE_MAX_UPLOAD_BYTES": str(self.archive.max_upload_bytes),
            "GATE_SERVICE_MAX_UNPACKED_BYTES": str(self.archive.max_total_bytes),
            "GATE_SERVICE_MAX_FILES": str(self.archive.max_files),
            "GATE_SERVICE_MAX_RATIO": str(self.archive.max_ratio),
            "GATE_SERVICE_ALLOWED_ROOTS": os.pathsep.join(str(p) for p in self.allowed_roots),
            "GATE_SERVICE_CONTRACTS_DIRS": os.pathsep.join(str(p) for p in self.contracts_dirs),
            "GATE_SERVICE_VLLM_URL": self.vllm_url,
            "GATE_SERVICE_BASE_DIR": str(self.base_dir or ""),
            "GATE_SERVICE_PUBLISH_PREFIX": self.publish.target_prefix,
            "GATE_SERVICE_SIGN_METHOD": self.publish.sign_method,
            "GATE_SERVICE_SIGN_KEY": str(self.publish.sign_key or ""),
            "GATE_SERVICE_PUBLISH_EXTRA": json.dumps(self.publish.extra),
            "GATE_SERVICE_LEASE_S": str(self.lease_s),
            "GATE_SERVICE_HEARTBEAT_S": str(self.heartbeat_s),
            "GATE_SERVICE_POLL_S": str(self.poll_s),
            "GATE_SERVICE_MAX_ATTEMPTS": str(self.max_attempts),
            "GATE_SERVICE_LOG_LEVEL": self.log_level,
        }
        if self.oidc is not None:
            env["GATE_SERVICE_OIDC_JSON"] = json.dumps(_oidc_to_dict(self.oidc))
        return env


def _oidc_to_dict(o: OIDCSettings) -> dict[str, Any]:
    return {
        "issuer": o.issuer,
        "audience": o.audience,
        "jwks_url": o.jwks_url,
        "algorithms": list(o.algorithms),
        "leeway_s": o.leeway_s,
        "rules": [{"role": r.role, "repository": r.repository, "ref": r.ref} for r in o.rules],
    }


def _paths(raw: str) -> tuple[Path, ...]:
    return tuple(Path(p) for p in raw.split(os.pathsep) if p)


def get_settings(environ: dict[str, str] | None = None) -> Settings:
    """Settings from ``GATE_SERVICE_*`` variables (``environ`` defaults to ``os.environ``)."""
    env = dict(os.environ if environ is None else environ)
    d = Settings()

    def get(name: str, default: str) -> str:
        return env.get(f"GATE_SERVICE_{name}") or default

    def num(name: str, default: float, kind: type[int] | type[float]) -> Any:
        raw = get(name, "")
        if not raw:
            return default
        try:
            return kind(raw)
        except ValueError as e:
            raise InputError(f"GATE_SERVICE_{name}={raw!r} is not a {kind.__name__}") from e

    executor = get("EXECUTOR", d.executor)
    if executor not in ("local", "ray"):
        raise InputError(f"GATE_SERVICE_EXECUTOR={executor!r}: expected 'local' or 'ray'")
    oidc: OIDCSettings | None = None
    if env.get("GATE_SERVICE_OIDC_CONFIG"):
        oidc = OIDCSettings.from_file(Path(env["GATE_SERVICE_OIDC_CONFIG"]))
    elif env.get("GATE_SERVICE_OIDC_JSON"):
        raw = json.loads(env["GATE_SERVICE_OIDC_JSON"])
        oidc = OIDCSettings(
            issuer=raw["issuer"],
            audience=raw["audience"],
            jwks_url=raw["jwks_url"],
            algorithms=tuple(raw.get("algorithms", ["RS256"])),
            leeway_s=int(raw.get("leeway_s", 30)),
            rules=tuple(
                OIDCRule(role=r["role"], repository=r["repository"], ref=r["ref"]) for r in raw["rules"]
            ),
        )
    key = get("SIGN_KEY", "")
    base = get("BASE_DIR", "")
    try:
        extra = json.loads(get("PUBLISH_EXTRA", "{}"))
    except json.JSONDecodeError as e:
        raise InputError(f"GATE_SERVICE_PUBLISH_EXTRA is not JSON: {e}") from e
    return Settings(
        data_dir=Path(get("DATA_DIR", str(d.data_dir))),
        database_url=get("DATABASE_URL", ""),
        host=get("HOST", d.host),
        port=num("PORT", d.port, int),
        executor=executor,  # type: ignore[arg-type]
        workers=num("WORKERS", d.workers, int),
        processes=num("PROCESSES", d.processes, int),
        ray_address=get("RAY_ADDRESS", ""),
        ray_num_cpus=num("RAY_NUM_CPUS", d.ray_num_cpus, int),
        ray_num_gpus=num("RAY_NUM_GPUS", d.ray_num_gpus, float),
        archive=ArchiveLimits(
            max_upload_bytes=num("MAX_UPLOAD_BYTES", d.archive.max_upload_bytes, int),
            max_total_bytes=num("MAX_UNPACKED_BYTES", d.archive.max_total_bytes, int),
            max_files=num("MAX_FILES", d.archive.max_files, int),
            max_ratio=num("MAX_RATIO", d.archive.max_ratio, float),
        ),
        allowed_roots=_paths(get("ALLOWED_ROOTS", "")),
        contracts_dirs=_paths(get("CONTRACTS_DIRS", "")),
        vllm_url=get("VLLM_URL", ""),
        base_dir=Path(base) if base else None,
        publish=PublishSettings(
            target_prefix=get("PUBLISH_PREFIX", ""),
            sign_method=get("SIGN_METHOD", "key"),
            sign_key=Path(key) if key else None,
            extra=extra,
        ),
        oidc=oidc,
        lease_s=num("LEASE_S", d.lease_s, float),
        heartbeat_s=num("HEARTBEAT_S", d.heartbeat_s, float),
        poll_s=num("POLL_S", d.poll_s, float),
        max_attempts=num("MAX_ATTEMPTS", d.max_attempts, int),
        log_level=get("LOG_LEVEL", d.log_level),
    )
