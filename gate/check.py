"""The packaging-contract gate: static checks of an adapter against a serving contract.

Every rule reads only small JSON files and safetensors headers; the one pass
over the weight data is the streamed NaN/Inf scan. Nothing in the adapter is
executed or unpickled: templates render in a sandboxed, time-limited child
process, pickled weights are never opened, symlinks are never followed.

Example::

    from gate.check import run_check
    from gate.contract import Contract

    report = run_check(Path("run/adapter"), Contract.from_yaml(Path("contracts/smollm2-vllm.yaml")))
    print(report.passed, [f.rule for f in report.findings])
"""

from __future__ import annotations

import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gate.contract import Contract
from gate.errors import InputError
from gate.rules import CheckContext, Finding, all_rules

__all__ = ["REPORT_VERSION", "CheckReport", "Finding", "resolve_adapter_dir", "run_check"]

REPORT_VERSION = "1.0"


@dataclass(frozen=True)
class CheckReport:
    """The verdict of ``gate check``: passed when no finding has severity error."""

    adapter_dir: Path
    contract_name: str
    contract_sha256: str
    base_dir: Path | None
    findings: tuple[Finding, ...]
    rules_run: int
    seconds: float

    @property
    def passed(self) -> bool:
        """True when no error-severity finding exists (warnings do not fail the gate)."""
        return not any(f.severity == "error" for f in self.findings)

    @property
    def errors(self) -> list[Finding]:
        """The error-severity findings."""
        return [f for f in self.findings if f.severity == "error"]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready report (``version`` 1.0)."""
        return {
            "version": REPORT_VERSION,
            "passed": self.passed,
            "adapter": str(self.adapter_dir),
            "contract": {"name": self.contract_name, "sha256": self.contract_sha256},
            "base": str(self.base_dir) if self.base_dir else None,
            "findings": [f.to_dict() for f in self.findings],
            "summary": {
                "errors": len(self.errors),
                "warnings": len(self.findings) - len(self.errors),
                "rules_run": self.rules_run,
            },
            "seconds": round(self.seconds, 4),
        }


def _require_dir(path: Path, what: str) -> None:
    try:
        st = path.lstat()
    except FileNotFoundError:
        raise InputError(f"{path}: no such {what} directory") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read the {what} directory: {e.strerror}") from None
    if stat.S_ISLNK(st.st_mode):
        raise InputError(
            f"{path}: the {what} directory is a symlink; gate does not follow symlinks",
            hint=f"pass the real directory: {path.resolve()}",
        )
    if not stat.S_ISDIR(st.st_mode):
        raise InputError(f"{path}: is not a directory (gate check takes the {what} directory)")


def resolve_adapter_dir(path: Path) -> Path:
    """``path`` itself, or ``path/adapter`` when ``path`` is a gate run directory (run.json + adapter/)."""
    path = Path(path)
    inner = path / "adapter"
    if (
        not (path / "adapter_config.json").exists()
        and (path / "run.json").is_file()
        and inner.is_dir()
        and not inner.is_symlink()
    ):
        return inner
    return path


def run_check(adapter_dir: Path, contract: Contract, base_dir: Path | None = None) -> CheckReport:
    """Check ``adapter_dir`` against ``contract`` (and the real base in ``base_dir``, when given).

    Raises :class:`InputError` only when the adapter or base directory cannot
    be read at all; every problem inside the adapter is a finding.
    """
    started = time.perf_counter()
    adapter_dir = Path(adapter_dir)
    _require_dir(adapter_dir, "adapter")
    if base_dir is not None:
        base_dir = Path(base_dir)
        if not base_dir.is_dir() or not (base_dir / "config.json").is_file():
            raise InputError(f"{base_dir}: not a base model directory (no config.json)")
    try:
        ctx = CheckContext(adapter_dir, contract, base_dir)
    except OSError as e:
        raise InputError(f"{adapter_dir}: cannot list the adapter directory: {e.strerror}") from None
    rules = all_rules()
    findings: list[Finding] = []
    for r in rules:
        try:
            findings.extend(r.check(ctx))
        except InputError:
            raise
        except Exception as e:  # a rule bug must fail the gate, not crash it or pass silently
            message = f"the rule could not finish ({type(e).__name__}: {str(e)[:200]}); failing closed"
            findings.append(Finding(r.id, "error", message, ".", "report this input as a gate bug"))
    return CheckReport(
        adapter_dir=adapter_dir,
        contract_name=contract.name,
        contract_sha256=contract.report_digest,
        base_dir=base_dir,
        findings=tuple(findings),
        rules_run=len(rules),
        seconds=time.perf_counter() - started,
    )
