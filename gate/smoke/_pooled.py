"""The smoke gate on a warm pool: a leased slot, a digest-derived name, the canary before and after."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

from gate.serving import CanaryResult, ServingRuntime, WarmPool
from gate.smoke._report import SmokeReport
from gate.smoke._run import EventSink
from gate.smoke._runner import run_smoke

__all__ = ["run_smoke_pooled"]


def run_smoke_pooled(
    pool: WarmPool,
    adapter_dir: Path,
    *,
    base_dir: Path,
    out_dir: Path,
    fail_fast: bool = False,
    on_event: EventSink | None = None,
    on_lease: Callable[[ServingRuntime], None] | None = None,
) -> SmokeReport:
    """Run ``gate smoke`` for one candidate on the pool's warm server, guarded by the canary.

    The canary runs before (a poisoned server is restarted first) and after the
    candidate. If it fails afterwards, or another candidate's failed canary restarted
    the server meanwhile, the verdict is void and the candidate is gated again on the
    fresh server; if the canary fails again, the candidate itself poisons the server
    and fails the ``canary`` probe. Parity uses the pool's warm reference. ``on_lease``
    is told the server each attempt runs on.
    """
    from gate.rules import lora_support

    if not lora_support(pool.contract).served:  # fails at its first probe: lease (boot) nothing
        return run_smoke(adapter_dir, pool.contract, base_dir=base_dir, server=None, out_dir=out_dir)
    report: SmokeReport | None = None
    for attempt in (1, 2):
        with pool.lease(base_dir) as server:
            if on_lease is not None:
                on_lease(server)
            report = run_smoke(
                adapter_dir,
                pool.contract,
                base_dir=base_dir,
                server=server,
                out_dir=out_dir,
                fail_fast=fail_fast,
                on_event=on_event,
                lora_name=pool.next_name(adapter_dir, base_dir),
                reference=pool.reference(base_dir) if pool.use_reference else None,
            )
        after = pool.check(base_dir)
        if after.ok and not pool.is_current(base_dir, server):
            # Another candidate poisoned the server while this one ran: this verdict is void too.
            after = CanaryResult(
                False, "the server was restarted while this candidate ran", math.inf, 0.0, True
            )
        report = report.with_canary(after, attempt=attempt)
        if after.ok:
            return report
    assert report is not None
    return report
