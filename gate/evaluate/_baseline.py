"""The last release's per-document scores, as the comparison for ``gate eval --baseline``.

A baseline is a released bundle (``oci://``, ``oci-layout://`` or a local bundle
directory), verified like any bundle before a number of it is read: the signature
under the pinned signer, every file against the signed digests, a passed verdict
under the same contract. Its eval report's per-document adapter scores are then
what the candidate is paired with, document by document.

Example::

    baseline = verified_baseline("oci://registry/team/adapter:v3", policy, contract=contract)
    report = run_eval(adapter, contract, base_dir=..., server=..., out_dir=..., baseline=baseline)
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from gate.bundle import REPORTS
from gate.errors import GateFailure, InputError
from gate.evaluate._report import REPORT_KIND
from gate.evaluate._scores import _score

if TYPE_CHECKING:
    from gate.contract import Contract
    from gate.signing import TrustPolicy

__all__ = ["Baseline", "load_baseline", "verified_baseline"]

_MAX_REPORT_BYTES = 256 << 20


@dataclass(frozen=True)
class Baseline:
    """A verified release's per-document adapter scores and where they came from."""

    ref: str
    signer: str
    #: The manifest digest the bundle was pulled by (None for a local bundle directory).
    digest: str | None
    scores: Mapping[str, Mapping[str, Mapping[str, float]]]

    def describe(self) -> dict[str, str | None]:
        """What the report records of the baseline."""
        return {"ref": self.ref, "digest": self.digest, "signer": self.signer}


def verified_baseline(ref: str, policy: TrustPolicy, *, contract: Contract) -> Baseline:
    """Verify the released bundle ``ref`` under ``policy`` and ``contract``, then read its eval scores.

    Anything short of a verified, passed release under the same contract is an
    :class:`InputError` naming why: a baseline that is not trusted is not a baseline.
    """
    from gate.oci import is_oci_ref
    from gate.verify import verify_bundle

    with tempfile.TemporaryDirectory(prefix="gate-baseline-") as tmp:
        out = Path(tmp) / "bundle" if is_oci_ref(ref) else None
        try:
            result = verify_bundle(ref, policy, expected_contract_sha256=contract.sha256, out=out)
        except GateFailure as e:
            raise InputError(
                f"--baseline {ref} is not a verified release: {e.message}",
                hint="pass a bundle published by gate release, and pin the key or identity that signed it",
            ) from e
        root = result.out if result.out is not None else Path(ref)
        _, scores = load_baseline(root / REPORTS["eval"])
    return Baseline(ref=str(result.ref), signer=str(result.signer), digest=result.digest, scores=scores)


def load_baseline(path: Path) -> tuple[Path, dict[str, dict[str, dict[str, float]]]]:
    """The per-document adapter scores of an eval report file (bounded, strict)."""
    report_path = Path(path)
    if not report_path.is_file():
        raise InputError(f"--baseline: {report_path} is not an eval report file")
    if report_path.is_symlink():
        raise InputError(f"--baseline {report_path} is a symlink")
    size = report_path.stat().st_size
    if size > _MAX_REPORT_BYTES:
        raise InputError(f"--baseline {report_path} is {size} bytes (limit {_MAX_REPORT_BYTES})")
    try:
        data = json.loads(report_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise InputError(f"--baseline {report_path} is not valid JSON: {e}") from e
    if not isinstance(data, dict) or data.get("kind") != REPORT_KIND:
        raise InputError(f"--baseline {report_path} is not a gate eval report (kind {REPORT_KIND!r})")
    scores = (data.get("per_document") or {}).get("adapter")
    if not isinstance(scores, dict):
        raise InputError(f"--baseline {report_path} has no per-document adapter scores")
    out: dict[str, dict[str, dict[str, float]]] = {}
    for task, metrics in scores.items():
        if not isinstance(metrics, dict):
            raise InputError(f"--baseline {report_path}: per_document.adapter.{task} is not an object")
        for key, docs in metrics.items():
            if not isinstance(docs, dict):
                raise InputError(
                    f"--baseline {report_path}: per_document.adapter.{task}.{key} is not an object"
                )
            # JSON null is how a NaN was written: keep it NaN so the verdict fails, never passes.
            values: dict[str, float] = {}
            for doc, value in docs.items():
                number = _score(value)
                values[str(doc)] = math.nan if number is None else number
            out.setdefault(task, {})[key] = values
    return report_path, out
