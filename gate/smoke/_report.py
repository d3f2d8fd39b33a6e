"""The smoke gate's report: one result per probe, the verdict rule and the JSON/text renderings."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from gate.console import atomic_write_json
from gate.serving import CanaryResult

__all__ = [
    "PROBES",
    "REPORT_NAME",
    "REPORT_VERSION",
    "ProbeResult",
    "SmokeReport",
    "Status",
    "clip",
    "jsonable",
]

REPORT_VERSION = "1.0"
REPORT_NAME = "smoke-report.json"
#: Probe names in the order they run (``canary`` is added by the warm pool, ``lora_support`` only
#: where the contract's runtime serves no LoRA on the base: then it is the one probe that runs).
PROBES = (
    "server",
    "weights_scan",
    "load",
    "models",
    "chat",
    "completions",
    "stops",
    "control_tokens",
    "logprob_shift",
    "long_prompts",
    "parity",
    "latency",
    "unload",
)

Status = Literal["pass", "fail", "error", "skipped"]


@dataclass(frozen=True)
class ProbeResult:
    """One probe's verdict, a one-line reason and its measurements."""

    name: str
    status: Status
    message: str
    seconds: float = 0.0
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """Only ``pass`` passes: an error or a skipped probe is never a pass."""
        return self.status == "pass"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "name": self.name,
            "status": self.status,
            "passed": self.passed,
            "message": self.message,
            "seconds": round(self.seconds, 3),
            "details": jsonable(self.details),
        }


@dataclass(frozen=True)
class SmokeReport:
    """The smoke gate's verdict: every probe's result, the server and the inputs."""

    adapter_dir: Path
    contract_path: Path
    contract_sha256: str
    base_dir: Path
    base_identity: str
    server: Mapping[str, Any]
    adapter_name: str
    probes: tuple[ProbeResult, ...]
    started_at: str
    seconds: float
    canary: tuple[Mapping[str, Any], ...] = ()
    report_path: Path | None = None

    @property
    def passed(self) -> bool:
        """Every probe of :data:`PROBES` ran and passed (an empty or partial report fails)."""
        names = {p.name for p in self.probes}
        return all(n in names for n in PROBES) and all(p.passed for p in self.probes)

    @property
    def failed_probes(self) -> list[str]:
        """Names of the probes that did not pass."""
        return [p.name for p in self.probes if not p.passed]

    def probe(self, name: str) -> ProbeResult | None:
        """The result of probe ``name``, if it is in the report."""
        return next((p for p in self.probes if p.name == name), None)

    def with_canary(self, result: CanaryResult, *, attempt: int) -> SmokeReport:
        """This report plus a warm-pool canary reading taken after the candidate.

        A failed canary turns the verdict into a failure: the server was
        poisoned, so nothing it said about this candidate can be trusted.
        """
        readings = (*self.canary, {"attempt": attempt, **result.to_dict()})
        if result.ok:
            probe = ProbeResult("canary", "pass", "the base model answers as at boot", result.seconds)
        else:
            probe = ProbeResult(
                "canary",
                "fail",
                f"the base model no longer answers as at boot after this candidate ({result.reason}); "
                "the verdict came from a poisoned server and is void"
                + ("; the server was restarted" if result.restarted else ""),
                result.seconds,
                {"restarted": result.restarted},
            )
        probes = (*(p for p in self.probes if p.name != "canary"), probe)
        report = replace(self, probes=probes, canary=readings)
        if self.report_path is not None:
            report.write(self.report_path)
        return report

    def to_dict(self) -> dict[str, Any]:
        """The JSON report (``"version": "1.0"``)."""
        return {
            "version": REPORT_VERSION,
            "gate": "smoke",
            "passed": self.passed,
            "failed_probes": self.failed_probes,
            "adapter_dir": str(self.adapter_dir),
            "adapter_name": self.adapter_name,
            "contract": {"path": str(self.contract_path), "sha256": self.contract_sha256},
            "base": {"dir": str(self.base_dir), "identity": self.base_identity},
            "server": jsonable(self.server),
            "probes": [p.to_dict() for p in self.probes],
            "canary": [jsonable(c) for c in self.canary],
            "started_at": self.started_at,
            "seconds": round(self.seconds, 2),
        }

    def write(self, path: Path) -> Path:
        """Write the JSON report to ``path`` atomically."""
        atomic_write_json(path, self.to_dict())
        return path

    def summary(self) -> str:
        """A readable multi-line summary for people."""
        lines = [f"smoke {'PASSED' if self.passed else 'FAILED'}: {self.adapter_dir}"]
        width = max(len(p.name) for p in self.probes) if self.probes else 8
        for p in self.probes:
            mark = {"pass": "ok  ", "fail": "FAIL", "error": "ERR ", "skipped": "skip"}[p.status]
            lines.append(f"  {mark} {p.name.ljust(width)}  {p.message}")
        missing = [n for n in PROBES if self.probe(n) is None]
        if missing:
            lines.append(f"  not run: {', '.join(missing)}")
        if self.report_path is not None:
            lines.append(f"  report: {self.report_path}")
        return "\n".join(lines)


def clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def jsonable(value: Any) -> Any:
    """Replace NaN/Inf (not JSON) with None, recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value
