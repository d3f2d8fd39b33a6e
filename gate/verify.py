"""Verify a released bundle: pulled by digest, signed by the pinned signer, and passed every gate.

``verify_bundle(ref, policy, expected_contract_sha256=...)`` accepts
``oci://HOST[:PORT]/REPO:TAG`` (or ``@sha256:...``), ``oci-layout://PATH:TAG`` or a
local bundle directory. It succeeds only when all of these hold:

1. every blob matches its digest, and no layer path leaves the output directory;
2. a signature referrer verifies under the pinned key, certificate identity, or
   sigstore identity + issuer;
3. the signed file list (names and sha256) equals the manifest's layers;
4. the verdict says every required gate passed, under the expected contract, and
   the bundled contract is byte-for-byte that contract.

Anything else raises :class:`gate.errors.GateFailure` with the reason.

Example::

    result = verify_bundle("oci-layout://./registry:v1", TrustPolicy(method="key", public_key=Path("k.pub")),
                           expected_contract_sha256=Contract.from_yaml(path).sha256, out=Path("adapter"))
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gate.bundle import (
    CONTRACT,
    EVAL_MARKDOWN,
    REPORTS,
    REQUIRED_GATES,
    SIGNATURE,
    Verdict,
    list_files,
    read_json,
    read_verdict,
)
from gate.console import atomic_write_text
from gate.digests import file_sha256
from gate.errors import GateFailure, InputError
from gate.oci import is_oci_ref, parse_ref, pull
from gate.signing import SignedContent, TrustPolicy, verify_signature

__all__ = ["VerifyResult", "verify_bundle"]

_MAX_REPORT_BYTES = 4 << 20


@dataclass(frozen=True)
class VerifyResult:
    """A verified bundle: where it came from, who signed it, and what its gates said."""

    ref: str
    digest: str | None
    signer: str
    contract_sha256: str
    verdict: Verdict
    files: dict[str, str]
    reports: dict[str, Any] = field(default_factory=dict)
    eval_markdown: str | None = None
    out: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (``gate verify bundle --json``)."""
        return {
            "version": "1.0",
            "verified": True,
            "ref": self.ref,
            "digest": self.digest,
            "signer": self.signer,
            "contract_sha256": self.contract_sha256,
            "gates": [g.model_dump() for g in self.verdict.gates],
            "files": self.files,
            "reports": self.reports,
            "out": str(self.out) if self.out else None,
        }


def _diff(signed: dict[str, str], actual: dict[str, str]) -> list[str]:
    problems = [f"file {p!r} is published but not signed" for p in sorted(set(actual) - set(signed))]
    problems += [f"file {p!r} is signed but not published" for p in sorted(set(signed) - set(actual))]
    problems += [
        f"file {p!r} differs from what was signed (sha256 {actual[p][:12]}... != {signed[p][:12]}...)"
        for p in sorted(set(signed) & set(actual))
        if signed[p] != actual[p]
    ]
    return problems


def _check_verdict(root: Path, expected_contract_sha256: str) -> tuple[Verdict, str]:
    verdict = read_verdict(root)
    problems = verdict.problems()
    contract_path = root / CONTRACT
    if not contract_path.is_file() or contract_path.is_symlink():
        problems.append(f"bundle holds no contract ({CONTRACT})")
        actual = ""
    else:
        actual = file_sha256(contract_path)
        if actual != verdict.contract.sha256:
            problems.append(
                f"bundled contract sha256 {actual} is not the verdict's {verdict.contract.sha256}"
            )
    want = expected_contract_sha256.removeprefix("sha256:")
    if verdict.contract.sha256 != want:
        problems.append(
            f"released under contract {verdict.contract.name!r} (sha256 {verdict.contract.sha256}), "
            f"not the expected contract (sha256 {want})"
        )
    if problems:
        raise GateFailure("the bundle's verdict does not allow serving it: " + "; ".join(problems))
    return verdict, actual


def _reports(root: Path) -> tuple[dict[str, Any], str | None]:
    reports: dict[str, Any] = {}
    for name, rel in REPORTS.items():
        path = root / rel
        if path.is_file() and not path.is_symlink():
            reports[name] = read_json(path, max_bytes=_MAX_REPORT_BYTES)
    md = root / EVAL_MARKDOWN
    text = None
    if md.is_file() and not md.is_symlink() and md.stat().st_size <= _MAX_REPORT_BYTES:
        text = md.read_text(encoding="utf-8", errors="replace")
    return reports, text


def _verify_candidates(
    root: Path, candidates: list[bytes], layers: dict[str, str], policy: TrustPolicy
) -> SignedContent:
    """Try each signature referrer; the first that verifies AND matches the manifest wins."""
    reasons: list[str] = []
    for i, raw in enumerate(candidates, 1):
        atomic_write_text(root / SIGNATURE, raw.decode("utf-8", errors="replace"))
        try:
            signed = verify_signature(root, policy)
        except GateFailure as e:
            reasons.append(f"signature {i}: {e.message}")
            continue
        diff = _diff(signed.files, layers)
        if diff:
            reasons.append(f"signature {i} covers other files than the manifest: " + "; ".join(diff))
            continue
        return signed
    (root / SIGNATURE).unlink(missing_ok=True)
    if not candidates:
        raise GateFailure(
            "the artifact has no signature referrer: it was never signed or is a partial publish"
        )
    raise GateFailure("no signature verifies for this artifact: " + " | ".join(reasons))


@contextlib.contextmanager
def _staging(out: Path | None) -> Iterator[Path]:
    parent = out.parent if out is not None else Path(tempfile.gettempdir())
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".gate-pull-", dir=parent))
    try:
        yield tmp / "bundle"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def verify_bundle(
    ref: str,
    policy: TrustPolicy,
    *,
    expected_contract_sha256: str,
    out: Path | None = None,
    force: bool = False,
    on_event: Callable[[dict[str, Any]], None] | None = None,
) -> VerifyResult:
    """Verify ``ref`` (see the module docstring); with ``out``, leave the verified bundle there.

    The bundle is pulled into a staging directory next to ``out`` and moved into
    place only after every check passed, so ``out`` never holds an unverified bundle.
    """
    policy.validate()
    if out is not None and out.exists():
        if out.is_symlink() or not out.is_dir():
            raise InputError(f"--out {out} exists and is not a directory")
        if any(out.iterdir()) and not force:
            raise InputError(f"--out {out} is not empty", hint="choose a new directory or pass --force")
    if not is_oci_ref(ref):
        local = Path(ref)
        if not local.is_dir():
            raise InputError(f"{ref} is neither an oci:// / oci-layout:// reference nor a bundle directory")
        files = {f.path: f.sha256 for f in list_files(local)}
        signed = verify_signature(local, policy)
        diff = _diff(signed.files, files)
        if diff:
            raise GateFailure("the bundle differs from what was signed: " + "; ".join(diff))
        verdict, contract_sha = _check_verdict(local, expected_contract_sha256)
        reports, md = _reports(local)
        return VerifyResult(str(local), None, signed.signer, contract_sha, verdict, files, reports, md, None)

    oref = parse_ref(ref)
    with _staging(out) as stage:
        pulled = pull(oref, stage, on_event=on_event)
        signed = _verify_candidates(stage, pulled.signatures, pulled.layers, policy)
        verdict, contract_sha = _check_verdict(stage, expected_contract_sha256)
        reports, md = _reports(stage)
        final: Path | None = None
        if out is not None:
            if out.exists():
                shutil.rmtree(out)
            os.replace(stage, out)
            final = out
        return VerifyResult(
            pulled.ref, pulled.digest, signed.signer, contract_sha, verdict, pulled.layers, reports, md, final
        )


def required_gates() -> tuple[str, ...]:
    """The gates every released bundle must have passed."""
    return REQUIRED_GATES
