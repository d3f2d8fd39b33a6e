"""Re-run a training run from its record and measure how far the result drifts.

``gate reproduce RUN_DIR`` trains again with the same toolkit, the same spec,
the dataset snapshot kept in the run directory (its digest re-checked) and the
same base (its identity re-checked), then compares per-step losses and adapter
file digests. Toolkits that are not bit-deterministic on the device are
reported as such, with the measured drift.

Example::

    report = reproduce(Path("runs/lf"))
    print(report.verdict, report.max_abs_loss_drift)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from gate.digests import file_sha256
from gate.errors import InputError
from gate.spec import TrainSpec
from gate.training import ADAPTER_DIR, RunRecord, load_record, train

__all__ = ["ReproduceReport", "StepDrift", "reproduce"]

REPORT_VERSION = "1.0"

Verdict = Literal["bit-identical", "losses-identical", "drift", "drift-over-tolerance"]


@dataclass(frozen=True)
class StepDrift:
    """One step's loss in the original run and in the reproduction."""

    step: int
    original: float
    reproduced: float

    @property
    def drift(self) -> float:
        """Absolute difference of the two losses."""
        return abs(self.reproduced - self.original)


@dataclass(frozen=True)
class ReproduceReport:
    """What a reproduction found."""

    run_dir: Path
    reproduction_dir: Path
    toolkit: str
    device: str
    tolerance: float
    steps: list[StepDrift]
    missing_steps: int
    adapter_files: dict[str, bool] = field(default_factory=dict)
    environment_match: bool = True
    dataset_sha256: str = ""

    @property
    def max_abs_loss_drift(self) -> float:
        """Largest per-step absolute loss difference."""
        return max((s.drift for s in self.steps), default=0.0)

    @property
    def mean_abs_loss_drift(self) -> float:
        """Mean per-step absolute loss difference."""
        return sum(s.drift for s in self.steps) / len(self.steps) if self.steps else 0.0

    @property
    def weights_identical(self) -> bool:
        """Whether adapter_model.safetensors is byte-identical."""
        return self.adapter_files.get("adapter_model.safetensors", False)

    @property
    def bit_deterministic(self) -> bool:
        """Every adapter file byte-identical and every step's loss equal."""
        return (
            bool(self.adapter_files) and all(self.adapter_files.values()) and self.max_abs_loss_drift == 0.0
        )

    @property
    def verdict(self) -> Verdict:
        """bit-identical / losses-identical (weights differ) / drift / drift-over-tolerance."""
        if self.missing_steps or self.max_abs_loss_drift > self.tolerance:
            return "drift-over-tolerance"
        if self.bit_deterministic:
            return "bit-identical"
        if self.max_abs_loss_drift == 0.0:
            return "losses-identical"
        return "drift"

    @property
    def passed(self) -> bool:
        """The reproduction stayed within the tolerance."""
        return self.verdict != "drift-over-tolerance"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready report (``version`` 1.0)."""
        return {
            "version": REPORT_VERSION,
            "run_dir": str(self.run_dir),
            "reproduction_dir": str(self.reproduction_dir),
            "toolkit": self.toolkit,
            "device": self.device,
            "verdict": self.verdict,
            "passed": self.passed,
            "bit_deterministic": self.bit_deterministic,
            "weights_identical": self.weights_identical,
            "environment_match": self.environment_match,
            "dataset_sha256": self.dataset_sha256,
            "tolerance": self.tolerance,
            "max_abs_loss_drift": self.max_abs_loss_drift,
            "mean_abs_loss_drift": self.mean_abs_loss_drift,
            "steps_compared": len(self.steps),
            "missing_steps": self.missing_steps,
            "adapter_files": self.adapter_files,
            "per_step": [
                {"step": s.step, "original": s.original, "reproduced": s.reproduced, "drift": s.drift}
                for s in self.steps
            ],
        }


def _spec_from_record(run_dir: Path, record: RunRecord) -> TrainSpec:
    """The recorded spec, pointed at the run's dataset snapshot and pinned to the recorded base."""
    if record.spec is None or record.dataset is None or record.base_model is None:
        raise InputError(
            f"{run_dir}/run.json records no complete spec", hint="only finished runs can be reproduced"
        )
    snapshot = (run_dir / record.dataset.snapshot).resolve()
    if not snapshot.is_relative_to(run_dir.resolve()) or snapshot.is_symlink() or not snapshot.is_file():
        raise InputError(f"{run_dir}: the dataset snapshot {record.dataset.snapshot} is missing")
    got = file_sha256(snapshot)
    if got != record.dataset.sha256:
        raise InputError(
            f"{snapshot}: the dataset snapshot changed since the run "
            f"(sha256 {got}, recorded {record.dataset.sha256})"
        )
    raw = record.spec.model_dump(mode="json")
    raw["dataset"] = {"path": str(snapshot)}
    raw["base"] = {**raw["base"], "identity": record.base_model.identity}
    if raw["base"].get("path"):
        raw["base"]["path"] = record.base_model.path
    if record.prompt is not None and record.prompt.source != "base":
        template = run_dir / "model" / "chat_template.jinja"
        if not template.is_file() or hashlib.sha256(template.read_bytes()).hexdigest() != (
            record.prompt.chat_template_sha256
        ):
            raise InputError(f"{run_dir}: the training template is missing or changed since the run")
        raw["prompt"] = {"template": "base", "template_file": str(template.resolve())}
    return TrainSpec.from_dict(raw, where=f"{run_dir}/run.json spec", source=run_dir / "run.json")


def default_reproduction_dir(run_dir: Path) -> Path:
    """``<RUN_DIR>.reproduce-N`` beside the run, the first N not taken."""
    n = 1
    while True:
        candidate = run_dir.parent / f"{run_dir.name}.reproduce-{n}"
        if not candidate.exists():
            return candidate
        n += 1


def reproduce(
    run_dir: Path, *, out_dir: Path | None = None, tolerance: float = 0.05, quiet: bool = False
) -> ReproduceReport:
    """Re-run ``run_dir`` from its ``run.json`` into ``out_dir`` and compare losses and adapter digests."""
    run_dir = Path(run_dir)
    record = load_record(run_dir)
    if record.status != "succeeded" or record.adapter is None:
        raise InputError(
            f"{run_dir}: the run did not succeed (status {record.status})", hint="reproduce a finished run"
        )
    spec = _spec_from_record(run_dir, record)
    target = out_dir or default_reproduction_dir(run_dir)
    # The spec comes from the record, so the record is what the reproduction names as its spec.
    again = train(run_dir / "run.json", record.toolkit.name, target, spec=spec, quiet=quiet)
    original = {s.step: s.loss for s in record.metrics.steps}
    repeated = {s.step: s.loss for s in again.metrics.steps}
    steps = [
        StepDrift(step=k, original=original[k], reproduced=repeated[k])
        for k in sorted(original)
        if k in repeated
    ]
    files: dict[str, bool] = {}
    assert again.adapter is not None
    for name, info in record.adapter.files.items():
        other = again.adapter.files.get(name)
        if name == "adapter_config.json":
            # It names the base by path; compare what matters for serving instead of the bytes.
            files[name] = _config_equal(run_dir / ADAPTER_DIR / name, target / ADAPTER_DIR / name)
        else:
            files[name] = other is not None and other.sha256 == info.sha256
    return ReproduceReport(
        run_dir=run_dir,
        reproduction_dir=target,
        toolkit=record.toolkit.name,
        device=f"{again.host.device}: {again.host.device_name}",
        tolerance=tolerance,
        steps=steps,
        missing_steps=len(set(original) ^ set(repeated)),
        adapter_files=files,
        environment_match=record.environment is not None
        and again.environment is not None
        and record.environment.lock_sha256 == again.environment.lock_sha256,
        dataset_sha256=record.dataset.sha256 if record.dataset else "",
    )


def _config_equal(a: Path, b: Path) -> bool:
    import json

    try:
        ca, cb = json.loads(a.read_text()), json.loads(b.read_text())
    except (OSError, ValueError):
        return False
    for c in (ca, cb):
        if isinstance(c, dict):
            c.pop("base_model_name_or_path", None)
            if isinstance(c.get("target_modules"), list):  # a set in PEFT: order is not meaningful
                c["target_modules"] = sorted(c["target_modules"], key=str)
    return bool(ca == cb)
