"""``gate release --json`` output turned into a verdict, with each gate's findings read from the bundle."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gate.github._markdown import plain

#: A gate report larger than this is not read for findings (reports are KBs; a bundle is not trusted).
_REPORT_LIMIT_BYTES = 8 << 20
#: The gates a release runs, in order (gate.bundle.REQUIRED_GATES), then what follows them.
_RELEASE_STEPS = ("check", "smoke", "eval")


def release_verdict(
    result: Mapping[str, Any],
    *,
    bundle_dir: Path | None = None,
    contract: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Turn ``gate release --json`` output into the verdict shape :func:`report` renders.

    Adds a row for every required gate that did not run and for signing and
    publishing, and reads each gate's findings from its report in the bundle
    (check findings, failed smoke probes, eval failures). ``contract`` (the
    contract file in the repository) is what annotations of failed gates point at.
    """
    verdict = _mapping(result.get("verdict"))
    released = result.get("released") is True
    published = _mapping(result.get("published")) or None
    bundle = Path(bundle_dir) if bundle_dir is not None else None
    if bundle is None and isinstance(result.get("bundle"), str):
        bundle = Path(result["bundle"])
    ran = {str(g.get("name")): g for g in verdict.get("gates") or [] if isinstance(g, Mapping)}
    gates: list[dict[str, Any]] = []
    for name in (*_RELEASE_STEPS, *(n for n in ran if n not in _RELEASE_STEPS)):
        gate = ran.get(name)
        if gate is None:
            gates.append({"name": name, "status": "skipped", "summary": "not run: an earlier gate stopped"})
            continue
        report = _read_report(bundle, gate.get("report"))
        row: dict[str, Any] = {
            "name": name,
            "status": str(gate.get("status") or ""),
            "summary": gate.get("summary") or "",
            "findings": _report_findings(report, contract),
        }
        if name == "eval" and bundle is not None:
            row["markdown"] = _read_text(bundle / "gate" / "reports" / "eval.md")
        gates.append(row)
    if released and published is not None:
        gates.append({"name": "sign", "status": "passed", "summary": "bundle signed"})
        gates.append({"name": "publish", "status": "passed", "summary": str(published.get("ref") or "")})
    else:
        reason = "not signed: a gate did not pass" if verdict.get("passed") is not True else "not released"
        gates.append({"name": "sign", "status": "skipped", "summary": reason})
        gates.append({"name": "publish", "status": "skipped", "summary": "nothing published"})
    contract_info = _mapping(verdict.get("contract"))
    out: dict[str, Any] = {
        "released": released,
        "gates": gates,
        "contract": contract_info.get("name"),
        "adapter": verdict.get("adapter_digest"),
        "ref": (published or {}).get("ref"),
        "digest": (published or {}).get("digest"),
        "bundle": str(bundle) if bundle is not None else None,
    }
    if not released and verdict.get("reason") and verdict.get("stopped_at") not in ran:
        # A stop that no gate row explains (approval missing, say) is shown on its own.
        out["error"] = verdict["reason"]
    return out


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _read_text(path: Path) -> str:
    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size > _REPORT_LIMIT_BYTES:
            return ""
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _read_report(bundle: Path | None, rel: object) -> Mapping[str, Any]:
    """A gate's JSON report from the bundle; {} when absent, oversized, a symlink or outside it."""
    if bundle is None or not isinstance(rel, str) or not rel:
        return {}
    path = bundle / rel
    try:
        path.resolve().relative_to(bundle.resolve())
    except (OSError, ValueError):
        return {}
    text = _read_text(path)
    try:
        data = json.loads(text) if text else {}
    except ValueError:
        return {}
    return data if isinstance(data, Mapping) else {}


def _report_findings(
    report: Mapping[str, Any], contract: str | os.PathLike[str] | None
) -> list[dict[str, Any]]:
    """Findings of one gate's report: check findings, failed smoke probes, eval failures."""
    file = os.fspath(contract) if contract is not None else None
    found: list[dict[str, Any]] = []
    for f in report.get("findings") or []:
        if isinstance(f, Mapping):
            found.append(
                {
                    "rule": f.get("rule") or "",
                    "severity": f.get("severity") or "error",
                    "message": f.get("message") or "",
                    "file": file,
                    "where": f.get("path") or "",
                }
            )
    for probe in report.get("probes") or []:
        if isinstance(probe, Mapping) and probe.get("status") not in ("pass", "passed", None):
            status = str(probe.get("status"))
            found.append(
                {
                    "rule": probe.get("name") or "",
                    "severity": "error" if status in ("fail", "error") else "warning",
                    "message": probe.get("message") or status,
                    "file": file,
                }
            )
    for failure in report.get("failures") or []:
        found.append({"rule": "", "severity": "error", "message": plain(failure), "file": file})
    return found
