"""A gate is an object with a name and a run method; the context is everything a gate may use."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from gate.contract import Contract
from gate.gates._servers import ServerSource

__all__ = ["Gate", "GateContext", "GateReport", "gate_dir"]

EventSink = Callable[[dict[str, Any]], None]


class GateReport(Protocol):
    """What every gate returns: a verdict and a JSON-ready form."""

    @property
    def passed(self) -> bool: ...

    def to_dict(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class GateContext:
    """The adapter under judgement and what the gates share while judging it."""

    adapter: Path
    contract: Contract
    base_dir: Path
    work_dir: Path
    servers: ServerSource
    #: The eval gate's baseline (a ``gate.evaluate.Baseline``: a released adapter's scores or a path).
    baseline: Any = None
    #: Where a single-gate command wants this gate's files (default: ``work_dir / <gate name>``).
    report_dir: Path | None = None
    base_scores: Any = None
    eval_limit: int | None = None
    #: Smoke: skip the remaining probes after the first failure.
    fail_fast: bool = False
    on_event: EventSink | None = None


def gate_dir(ctx: GateContext, name: str) -> Path:
    """The directory for gate ``name``'s own files under ``ctx``."""
    return ctx.report_dir if ctx.report_dir is not None else ctx.work_dir / name


class Gate(ABC):
    """One gate of the release: ``check``, ``smoke``, ``eval`` (others join through :data:`GATES`)."""

    #: The gate's name in verdicts, reports and events.
    name: str = ""
    #: Whether the gate needs a server (a release whose earlier gate failed then boots nothing).
    needs_server: bool = False

    @abstractmethod
    def run(self, ctx: GateContext) -> GateReport:
        """Judge ``ctx.adapter``; raise :class:`gate.errors.Error` when the gate cannot run at all."""

    def write_extra(self, report: GateReport, target: Path) -> None:
        """Write any further renderings beside the JSON report (the eval gate's Markdown)."""
        return None
