"""``run_release``: every gate, then sign and publish, stopping at the first failure (see the package)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from gate.bundle import VERDICT, read_json, read_verdict
from gate.console import atomic_write_json
from gate.digests import file_sha256, files_digest
from gate.errors import GateFailure, InputError
from gate.evidence import PathScrubber, load_run_record, match_adapter_files, normalise_adapter
from gate.pipeline._events import _Emitter
from gate.pipeline._gates import _run_gates
from gate.pipeline._request import EventSink, ReleaseRequest, ReleaseResult
from gate.pipeline._seal import _publish, _seal, _sign
from gate.pipeline._staging import (
    _adapter_files,
    _release_lock,
    _replace_dir,
    _resumable,
    _stage_contract,
    _sweep,
)

__all__ = ["run_release"]


def run_release(request: ReleaseRequest, *, on_event: EventSink | None = None) -> ReleaseResult:
    """Run every gate, then sign and publish; stop at the first failure (see the module docstring)."""
    from gate.contract import Contract
    from gate.oci import parse_ref, publish

    emit = _Emitter(on_event)
    contract = Contract.from_yaml(request.contract_path)
    contract_sha = contract.sha256  # reads every referenced file: a missing one stops here
    ref = parse_ref(request.target)
    if ref.digest or not ref.tag:
        raise InputError(f"--to must name a tag: {request.target}", hint="e.g. oci://HOST/REPO:v1")
    request.signing.validate()
    run_json = request.run_dir / "run.json"
    run_record = load_run_record(run_json)
    raw_record = read_json(run_json)
    adapter_src = request.run_dir / "adapter"
    sources = _adapter_files(adapter_src)
    out_dir = request.out_dir.resolve()
    work = (request.work_dir or out_dir.parent / f"{out_dir.name}.work").resolve()

    with _release_lock(out_dir):
        _sweep(out_dir)
        emit(
            {
                "event": "release.start",
                "run": str(request.run_dir),
                "contract": contract.name,
                "target": str(ref),
            }
        )
        staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.staging-", dir=out_dir.parent))
        try:
            # The gates judge a private copy, and the bundle gets exactly the bytes they judged.
            adapter_copy = staging / "_adapter"
            adapter_copy.mkdir()
            for src in sources:
                shutil.copyfile(src, adapter_copy / src.name, follow_symlinks=False)
            names = [p.name for p in sources]
            match_adapter_files(run_record, {n: file_sha256(adapter_copy / n) for n in names})
            bundle = staging / "bundle"
            scrubber = PathScrubber.for_release(
                {
                    bundle: "<bundle>",
                    adapter_copy: "<bundle>",
                    staging: "<staging>",
                    out_dir: "<bundle>",
                    work: "<work>",
                    request.run_dir: "<run>",
                    request.contract_path.parent: "<contract>",
                    request.base_dir: f"<base:{contract.base_model.name}>",
                    Path.cwd(): "<cwd>",
                }
            )
            fixes = normalise_adapter(adapter_copy, contract.base_model.name, scrubber)
            adapter_digest = files_digest(adapter_copy, names)
            if _resumable(out_dir, request.signing, adapter_digest, contract_sha):
                emit(
                    {
                        "event": "release.resume",
                        "bundle": str(out_dir),
                        "reason": "a signed bundle of this adapter under this contract is already there",
                    }
                )
                verdict = read_verdict(out_dir)
                return _publish(verdict, out_dir, ref, emit, publish, resumed=True)
            (bundle / "gate" / "reports").mkdir(parents=True)
            _stage_contract(contract, request.contract_path, bundle)
            verdict = _run_gates(
                request, contract, raw_record, adapter_copy, adapter_digest, bundle, work, emit
            )
            for src in sources:
                shutil.copyfile(adapter_copy / src.name, bundle / src.name, follow_symlinks=False)
            if files_digest(bundle, names) != adapter_digest:
                raise GateFailure("adapter files changed while the gates ran; refusing to release them")
            verdict = _seal(
                verdict, contract, contract_sha, run_record, raw_record, fixes, bundle, names, scrubber
            )
            atomic_write_json(bundle / VERDICT, verdict.model_dump(mode="json"))
            if not verdict.passed:
                _replace_dir(bundle, out_dir)
                if verdict.stopped_at == "approval":
                    emit(
                        {
                            "event": "release.awaiting_approval",
                            "bundle": str(out_dir),
                            "staged_digest": verdict.staged_digest,
                            "adapter_digest": verdict.adapter_digest,
                        }
                    )
                emit(
                    {
                        "event": "release.finish",
                        "released": False,
                        "stopped_at": verdict.stopped_at,
                        "reason": verdict.reason,
                    }
                )
                return ReleaseResult(verdict, out_dir, None, False, emit.events)
            _sign(bundle, request.signing, emit, into=out_dir)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return _publish(verdict, out_dir, ref, emit, publish, resumed=False)
