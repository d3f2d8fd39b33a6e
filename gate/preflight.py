"""Serving compatibility before training: ``gate preflight SPEC --contract FILE --toolkit NAME``.

First statically, from the spec alone: the LoRA rank against the contract's
rank limit, the target modules against the allowed ones, the base identity,
the training template against the serving template, and the template and
tokenizer changes the toolkit WILL make with the spec's overrides (LLaMA-Factory's
``resize_vocab`` or a named template, Unsloth's template replacement, Axolotl's
``chat_template`` overrides). A spec that fails statically is not trained.
Then it trains one or two steps with the real toolkit and runs the contract gate
(``gate check``) and, unless disabled, the smoke gate (real vLLM) on that adapter.

Example::

    report = preflight(Path("train.yaml"), Path("contracts/smollm2-vllm.yaml"), "unsloth", out_dir=Path("pf"))
    print(report.passed, [f.message for f in report.static if f.status == "fail"])
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from gate.contract import Contract
from gate.errors import Error
from gate.spec import TrainSpec
from gate.training import ADAPTER_DIR, get_trainer, train

__all__ = ["PreflightFinding", "PreflightReport", "preflight", "static_checks"]

REPORT_VERSION = "1.0"
#: Steps trained for the dynamic part: enough for a real adapter file, cheap on CPU.
PREFLIGHT_STEPS = 2
#: Smoke probes that judge servability. A 2-step adapter has not learned the task yet, so the probes that
#: judge trained behaviour (``chat`` answers matching the contract's regexes, ``stops`` within the prompts'
#: token budgets) are reported but do not decide preflight; the template/EOS checks cover what they guard.
SERVABILITY_PROBES = (
    "server", "weights_scan", "load", "models", "completions", "control_tokens", "logprob_shift", "parity",
    "latency", "unload",
)  # fmt: skip


@dataclass(frozen=True)
class PreflightFinding:
    """One static check's outcome."""

    check: str
    status: Literal["pass", "fail", "warn"]
    message: str

    def to_dict(self) -> dict[str, str]:
        """JSON-ready form."""
        return {"check": self.check, "status": self.status, "message": self.message}


@dataclass(frozen=True)
class PreflightReport:
    """Static findings, then the check (and smoke) verdicts on a real few-step adapter."""

    spec_path: Path
    contract_path: Path
    toolkit: str
    static: list[PreflightFinding]
    run_dir: Path | None = None
    trained: bool = False
    train_error: str | None = None
    check: dict[str, Any] | None = None
    smoke: dict[str, Any] | None = None
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def static_passed(self) -> bool:
        """No static check failed."""
        return all(f.status != "fail" for f in self.static)

    @property
    def passed(self) -> bool:
        """Static checks passed, the few-step run trained, and every gate that ran passed."""
        if not self.static_passed or not self.trained or self.check is None:
            return False
        if not self.check.get("passed"):
            return False
        return self.smoke is None or _servable(self.smoke)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready report (``version`` 1.0)."""
        return {
            "version": REPORT_VERSION,
            "passed": self.passed,
            "spec": str(self.spec_path),
            "contract": str(self.contract_path),
            "toolkit": self.toolkit,
            "static": {"passed": self.static_passed, "findings": [f.to_dict() for f in self.static]},
            "run_dir": str(self.run_dir) if self.run_dir else None,
            "trained": self.trained,
            "train_error": self.train_error,
            "check": self.check,
            "smoke": self.smoke,
            "smoke_servable": None if self.smoke is None else _servable(self.smoke),
            "notes": self.notes,
            "seconds": round(self.seconds, 1),
        }


def static_checks(spec: TrainSpec, contract: Contract, toolkit: str) -> list[PreflightFinding]:
    """What can be decided before training: rank, modules, base, template, toolkit-made changes."""
    found: list[PreflightFinding] = []
    trainer = get_trainer(toolkit)
    r, limit = spec.lora.r, contract.effective_rank_max
    if r > limit:
        found.append(
            PreflightFinding(
                "lora.rank",
                "fail",
                f"lora.r {r} exceeds the contract's rank limit {limit} (serving.max_lora_rank "
                f"{contract.serving.max_lora_rank}): vLLM refuses to load it",
            )
        )
    elif r < contract.adapter.rank_min:
        found.append(
            PreflightFinding(
                "lora.rank", "fail", f"lora.r {r} is below adapter.rank_min {contract.adapter.rank_min}"
            )
        )
    else:
        found.append(PreflightFinding("lora.rank", "pass", f"lora.r {r} <= {limit}"))
    allowed = set(contract.adapter.allowed_target_modules)
    bad = [m for m in spec.lora.target_modules if m not in allowed]
    if bad:
        found.append(
            PreflightFinding(
                "lora.target_modules",
                "fail",
                f"{', '.join(bad)} not allowed by the contract (allowed: {', '.join(sorted(allowed))})",
            )
        )
    else:
        found.append(PreflightFinding("lora.target_modules", "pass", "all target modules are allowed"))
    resolved = spec.resolve(check_identity=False)
    if resolved.base_identity != contract.base_model.identity:
        found.append(
            PreflightFinding(
                "base.identity",
                "fail",
                f"the spec's base is {resolved.base_identity}, "
                f"the contract serves {contract.base_model.identity}",
            )
        )
    else:
        found.append(PreflightFinding("base.identity", "pass", "the spec trains on the contract's base"))
    if resolved.chat_template_sha256 != contract.prompt.chat_template_sha256:
        found.append(
            PreflightFinding(
                "prompt.template",
                "fail",
                f"the spec trains with a chat template ({resolved.template_source}, sha256 "
                f"{resolved.chat_template_sha256[:12]}...) that is not the serving template (sha256 "
                f"{contract.prompt.chat_template_sha256[:12]}...): vLLM serves with the base's template",
            )
        )
    else:
        found.append(PreflightFinding("prompt.template", "pass", "trains with the serving template"))
    if spec.training.seq_len > contract.serving.max_model_len:
        found.append(
            PreflightFinding(
                "training.seq_len",
                "warn",
                f"seq_len {spec.training.seq_len} exceeds the server's "
                f"max_model_len {contract.serving.max_model_len}",
            )
        )
    changes = trainer.planned_changes(spec)
    for c in changes:
        found.append(PreflightFinding(f"toolkit.{c.breaks}", "fail", f"{c.key}: {c.what}"))
    if not changes:
        found.append(
            PreflightFinding("toolkit.export", "pass", f"{toolkit} keeps the base's template and tokenizer")
        )
    return found


def preflight(
    spec_path: Path,
    contract_path: Path,
    toolkit: str,
    *,
    out_dir: Path,
    steps: int = PREFLIGHT_STEPS,
    smoke: bool = True,
    server_url: str | None = None,
    quiet: bool = False,
) -> PreflightReport:
    """Run the static checks; if they pass, train ``steps`` steps into ``out_dir/run`` and gate it."""
    started = time.monotonic()
    spec_path, contract_path, out_dir = Path(spec_path), Path(contract_path), Path(out_dir)
    contract = Contract.from_yaml(contract_path)
    spec = TrainSpec.from_yaml(spec_path)
    found = static_checks(spec, contract, toolkit)
    base = PreflightReport(spec_path=spec_path, contract_path=contract_path, toolkit=toolkit, static=found)
    if not base.static_passed:
        return _with(base, started, notes=["static checks failed: nothing was trained"])
    run_dir = out_dir / "run"
    try:
        record = train(spec_path, toolkit, run_dir, steps=steps, quiet=quiet)
    except Error as e:
        return _with(base, started, run_dir=run_dir, train_error=e.diagnostics())
    from gate.check import run_check

    adapter = run_dir / ADAPTER_DIR
    base_dir = Path(record.base_model.path) if record.base_model else None
    check = run_check(adapter, contract, base_dir).to_dict()
    smoke_report: dict[str, Any] | None = None
    notes = [f"trained {len(record.metrics.steps)} step(s) with {toolkit} in {record.wall_seconds:.0f}s"]
    if smoke and base_dir is not None:
        from gate.gates import run_one
        from gate.smoke import SmokeReport

        report = run_one(
            "smoke", adapter, contract, base_dir=base_dir, work_dir=out_dir, server_url=server_url
        )
        assert isinstance(report, SmokeReport)
        smoke_report = report.to_dict()
        behaviour = [p for p in report.failed_probes if p not in SERVABILITY_PROBES]
        if behaviour:
            notes.append(
                f"smoke behaviour probes {behaviour} failed on the {steps}-step adapter (not judged: "
                "the task is not learned yet)"
            )
    elif not smoke:
        notes.append("smoke gate skipped (--no-smoke)")
    return _with(base, started, run_dir=run_dir, trained=True, check=check, smoke=smoke_report, notes=notes)


def _servable(smoke: dict[str, Any]) -> bool:
    """Every servability probe ran and passed (a missing probe fails: no fail-open)."""
    results = {str(p.get("name")): bool(p.get("passed")) for p in smoke.get("probes", [])}
    return all(results.get(name, False) for name in SERVABILITY_PROBES)


def _with(report: PreflightReport, started: float, **fields: Any) -> PreflightReport:
    from dataclasses import replace

    notes = [*report.notes, *fields.pop("notes", [])]
    return replace(report, seconds=time.monotonic() - started, notes=notes, **fields)
