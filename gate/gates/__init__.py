"""The gates as objects and the one runner every path uses.

A gate has a name and a ``run(ctx)`` method returning a report with ``passed`` and
``to_dict()``; :data:`GATES` finds them by name (entry-point group ``gate.gates``).
:class:`ServerSource` owns the decision to attach to a server, lease one from a
warm pool, or start one. Release (:mod:`gate.pipeline`), the service's workers,
the pilot, preflight and the single-gate commands all go through :func:`run_gates`
or :func:`run_one`.

Example::

    with ServerSource(contract, base_dir, log_dir=work / "logs", url=None) as servers:
        ctx = GateContext(adapter, contract, base_dir, work, servers)
        outcome = run_gates(ctx, gates_named(["check", "smoke", "eval"]), report_paths=paths)
"""

from __future__ import annotations

from pathlib import Path

from gate.contract import Contract
from gate.gates._base import Gate, GateContext, GateReport
from gate.gates._runner import GATES, GatesOutcome, gates_named, run_gates, summarize
from gate.gates._servers import ServerSource, install_pools, installed_pools
from gate.serving import DEFAULT_READY_TIMEOUT

__all__ = [
    "GATES",
    "Gate",
    "GateContext",
    "GateReport",
    "GatesOutcome",
    "ServerSource",
    "gates_named",
    "install_pools",
    "installed_pools",
    "run_gates",
    "run_one",
    "summarize",
]


def run_one(
    name: str,
    adapter: Path,
    contract: Contract,
    *,
    base_dir: Path,
    work_dir: Path,
    server_url: str | None = None,
    use_pool: bool = False,
    ready_timeout: float = DEFAULT_READY_TIMEOUT,
    **options: object,
) -> GateReport:
    """Run the single gate ``name`` (``gate smoke``, ``gate eval``), attaching, pooling or starting.

    ``options`` are :class:`GateContext` fields (``baseline``, ``eval_limit``, ``on_event``).
    Raises what the gate raises; the server this call started is stopped on return.
    """
    with ServerSource(
        contract,
        base_dir,
        log_dir=work_dir / "server",
        url=server_url,
        use_announced=use_pool,
        ready_timeout=ready_timeout,
    ) as servers:
        ctx = GateContext(adapter, contract, base_dir, work_dir, servers, **options)  # type: ignore[arg-type]
        return GATES.get(name)().run(ctx)
