"""The gates of a release: check, smoke and eval run in order, their reports and results as a verdict."""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

from gate import __version__
from gate.bundle import REPORTS, REQUIRED_GATES, ContractRef, Verdict
from gate.gates import GateContext, ServerSource, gates_named, run_gates
from gate.pipeline._events import _Emitter, _now
from gate.pipeline._request import ReleaseRequest
from gate.signing import tool_versions


def _run_gates(
    request: ReleaseRequest,
    contract: Any,
    run_record: Any,
    adapter: Path,
    adapter_digest: str,
    bundle: Path,
    work: Path,
    emit: _Emitter,
) -> Verdict:
    """Run check, smoke and eval in order; write their reports into ``bundle``; return the verdict."""
    from gate.contracts import resolve_base

    # the contract (or the run) names the base: one resolver, no SmolLM2 fallback
    base_dir = resolve_base(contract, request.base_dir, run=request.run_dir)
    (bundle / "gate").mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    tools: dict[str, str] = {"gate": __version__, "python": platform.python_version(), **tool_versions()}
    with ServerSource(
        contract, base_dir, log_dir=work / "logs", url=request.server_url, on_event=emit
    ) as servers:
        ctx = GateContext(adapter, contract, base_dir, work, servers, baseline=request.baseline)
        outcome = run_gates(
            ctx,
            gates_named(REQUIRED_GATES),
            report_paths={name: bundle / rel for name, rel in REPORTS.items()},
            emit=emit,
        )
    # The verdict names each report by its path inside the bundle.
    results = tuple(
        r.model_copy(update={"report": REPORTS[r.name] if r.report is not None else None})
        for r in outcome.results
    )
    tools.update(outcome.tools)
    stopped = outcome.stopped
    return Verdict(
        passed=stopped is None,
        stopped_at=stopped[0] if stopped else None,
        reason=stopped[1] if stopped else None,
        required_gates=REQUIRED_GATES,
        gates=results,
        contract=ContractRef(name=contract.name, version=contract.metadata.version, sha256=contract.sha256),
        adapter_digest=adapter_digest,
        base_model={
            "name": contract.base_model.name,
            "identity": contract.base_model.identity,
            "architecture": contract.base_model.architecture,
        },
        run={
            k: run_record[k]
            for k in ("name", "run_id", "toolkit", "steps", "spec_sha256", "created_at")
            if isinstance(run_record, dict) and k in run_record
        },
        tools=tools,
        created_at=_now(),
    )
