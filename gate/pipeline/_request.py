"""What a release is asked to do and what it returns, and the event sink it reports progress to."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gate.bundle import Verdict
from gate.signing import SigningConfig

if TYPE_CHECKING:
    from gate.evaluate import Baseline

__all__ = ["EventSink", "ReleaseRequest", "ReleaseResult"]

EventSink = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class ReleaseRequest:
    """What to release, under which contract, signed how, to where."""

    run_dir: Path
    contract_path: Path
    target: str
    signing: SigningConfig
    out_dir: Path
    base_dir: Path | None = None
    #: An already running vLLM server to use for smoke and eval (else one is started).
    server_url: str | None = None
    #: Where logs and the gates' own report directories go (default: beside out_dir).
    work_dir: Path | None = None
    #: A verified earlier release to judge eval regressions against (instead of the base).
    baseline: Baseline | None = None


@dataclass(frozen=True)
class ReleaseResult:
    """The verdict plus what happened after it: where the bundle is and where it was published."""

    verdict: Verdict
    bundle_dir: Path
    published: dict[str, Any] | None = None
    resumed: bool = False
    events: list[dict[str, Any]] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """True only when every gate passed and the bundle was signed and published."""
        return self.verdict.passed and self.published is not None

    @property
    def stopped_at(self) -> str | None:
        """The gate the release stopped at (None when it went through)."""
        return self.verdict.stopped_at

    @property
    def reason(self) -> str | None:
        """Why it stopped."""
        return self.verdict.reason

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``gate release --json``)."""
        return {
            "version": "1.0",
            "released": self.passed,
            "verdict": self.verdict.model_dump(mode="json"),
            "bundle": str(self.bundle_dir),
            "published": self.published,
            "resumed": self.resumed,
        }
