"""One gate runner for every path: release, the service, the pilot, preflight, single-gate commands."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gate.bundle import GateResult, GateStatus
from gate.console import atomic_write_json
from gate.errors import Error
from gate.gates._base import Gate, GateContext
from gate.registry import Registry

__all__ = ["GATES", "GatesOutcome", "gates_named", "run_gates", "summarize"]

EventSink = Callable[[dict[str, Any]], None]

#: Gates by name; another package adds one through the ``gate.gates`` entry-point group.
GATES: Registry[Gate] = Registry("gate", Gate, entry_point_group="gate.gates")  # type: ignore[type-abstract]
GATES.register_lazy("check", "gate.gates._builtin:CheckGate")
GATES.register_lazy("smoke", "gate.gates._builtin:SmokeGate")
GATES.register_lazy("eval", "gate.gates._builtin:EvalGate")


def gates_named(names: Sequence[str]) -> list[Gate]:
    """Gate objects for ``names``, in that order."""
    return [GATES.get(name)() for name in names]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class GatesOutcome:
    """What :func:`run_gates` did: one result per gate that ran, their reports, and where it stopped."""

    results: tuple[GateResult, ...]
    #: Gate name -> the report dict written for it (absent when the gate raised).
    reports: dict[str, dict[str, Any]]
    tools: dict[str, str]
    #: (gate, reason) of the first gate that did not pass, or None when every gate passed.
    stopped: tuple[str, str] | None


def summarize(report: dict[str, Any], passed: bool) -> str:
    """One line for a verdict: the report's own summary, its failed probes or findings."""
    for key in ("summary", "reason", "error"):
        if isinstance(report.get(key), str) and report[key]:
            return str(report[key])[:300]
    counts = report.get("summary")
    prefix = ""
    if isinstance(counts, dict):
        prefix = " ".join(f"{k}={v}" for k, v in counts.items() if isinstance(v, int | float | str))[:200]
    failures = report.get("failures")
    if isinstance(failures, list) and failures:
        return "; ".join(str(f) for f in failures[:3])[:300]
    probes = report.get("probes")
    if isinstance(probes, list) and not passed:
        failed = [p for p in probes if isinstance(p, dict) and p.get("passed") is False]
        if failed:
            return "; ".join(f"{p.get('name')}: {p.get('message', 'failed')}" for p in failed[:3])[:300]
    findings = report.get("findings")
    if isinstance(findings, list) and not passed:
        bad = [
            f
            for f in findings
            if isinstance(f, dict) and f.get("severity", f.get("level")) in ("error", "fail")
        ]
        shown = bad or findings
        text = "; ".join(
            str(f.get("message", f.get("rule", f))) if isinstance(f, dict) else str(f) for f in shown[:3]
        )
        return (f"{prefix}: {text}" if prefix else text)[:300]
    return prefix or ("passed" if passed else "failed")


def _report_tools(report: dict[str, Any]) -> dict[str, str]:
    found: dict[str, str] = {}
    for key in ("tools", "versions", "tool_versions"):
        value = report.get(key)
        if isinstance(value, dict):
            found.update({str(k): str(v) for k, v in value.items() if isinstance(v, str | int | float)})
    server = report.get("server")
    verified = server.get("verified") if isinstance(server, dict) else None
    versions = server.get("versions") if isinstance(server, dict) else None
    for source in (versions, verified and {"vllm": verified.get("version")}):
        if isinstance(source, dict):
            found.update({str(k): str(v) for k, v in source.items() if isinstance(v, str)})
    return found


def run_gates(
    ctx: GateContext,
    gates: Sequence[Gate],
    *,
    report_paths: dict[str, Path],
    stop_on_failure: bool = True,
    emit: EventSink | None = None,
) -> GatesOutcome:
    """Run ``gates`` in order on ``ctx``; write each report to ``report_paths[gate.name]``.

    A gate that raises :class:`gate.errors.Error` is an ``error`` result with its message.
    With ``stop_on_failure=False`` every gate runs even after one failed (pilots measure
    them all); a release stops at the first.
    """
    sink = emit or (lambda event: None)
    results: list[GateResult] = []
    reports: dict[str, dict[str, Any]] = {}
    tools: dict[str, str] = {}
    stopped: tuple[str, str] | None = None
    for gate in gates:
        name = gate.name
        sink({"event": "gate.start", "gate": name})
        started_at, t0 = _now(), time.monotonic()
        report_path: str | None = None
        try:
            report = gate.run(ctx)
            data = report.to_dict()
            status: GateStatus = "passed" if report.passed else "failed"
            summary = summarize(data, report.passed)
            target = report_paths[name]
            target.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(target, data)
            gate.write_extra(report, target)
            reports[name] = data
            tools.update(_report_tools(data))
            report_path = str(target)
        except Error as e:
            status, summary = "error", e.message
        seconds = round(time.monotonic() - t0, 3)
        results.append(
            GateResult(
                name=name,
                status=status,
                summary=summary,
                report=report_path,
                started_at=started_at,
                finished_at=_now(),
                seconds=seconds,
            )
        )
        sink({"event": "gate.finish", "gate": name, "status": status, "summary": summary, "seconds": seconds})
        if status != "passed" and stopped is None:
            stopped = (name, f"gate {name} {status}: {summary}")
            if stop_on_failure:
                break
    return GatesOutcome(tuple(results), reports, tools, stopped)
