"""The fail-closed release pipeline: contract -> smoke -> eval -> sign -> publish.

``run_release(request, on_event=...)`` stops at the first gate that does not
pass; nothing is signed unless every gate passed and nothing is published unless
it is signed. The verdict (``gate/verdict.json`` in the bundle) records which
gates ran, their results, tool versions and timestamps, and why it stopped.

Crash safety: the bundle is assembled in a staging directory beside ``out_dir``
and moved into place only once signed (or once a gate failed, unsigned, for
inspection); publishing moves the tag last (see :mod:`gate.oci`). Re-running the
same release is safe: a signed bundle already in ``out_dir`` for the same adapter
and contract, whose signature verifies with the signing key, is published
without running the gates again; otherwise everything runs from the start.

Every step emits an event dict (``{"event": "gate.start", "gate": "smoke", ...}``)
so a service can stream progress.

Example::

    result = run_release(ReleaseRequest(run_dir=Path("runs/r1"), contract_path=default_contract(),
                                        target="oci-layout://./registry:v1", out_dir=Path("bundle"),
                                        signing=SigningConfig(method="key", private_key=Path("k.pem"))))
    result.passed, result.published
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gate import __version__
from gate.bundle import (
    CHAT_TEMPLATE,
    CONTRACT,
    CONTRACT_FILES,
    REPORTS,
    REQUIRED_GATES,
    RUN_RECORD,
    SIGNATURE,
    VERDICT,
    ContractRef,
    Verdict,
    check_relpath,
    list_files,
    read_json,
    read_verdict,
    staged_digest,
    staged_files,
)
from gate.console import atomic_write_json, atomic_write_text
from gate.digests import file_sha256, files_digest
from gate.errors import Error, GateFailure, InputError
from gate.evidence import (
    PathScrubber,
    bundled_contract_digest,
    load_run_record,
    match_adapter_files,
    normalise_adapter,
    release_tools,
    released_run_record,
)
from gate.gates import GateContext, GatesOutcome, ServerSource, gates_named, run_gates
from gate.signing import SigningConfig, TrustPolicy, sign_bundle, tool_versions, verify_signature

if TYPE_CHECKING:
    from gate.evaluate import Baseline

__all__ = ["GatesOutcome", "ReleaseRequest", "ReleaseResult", "run_gates", "run_release"]

EventSink = Callable[[dict[str, Any]], None]
#: Test-only: pause (so a test can SIGKILL the process) right after the event named here.
_PAUSE_ENV = "GATE_TESTONLY_PAUSE_AFTER"


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


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class _Emitter:
    def __init__(self, sink: EventSink | None) -> None:
        self.sink = sink
        self.events: list[dict[str, Any]] = []
        self.pause_after = os.environ.get(_PAUSE_ENV)

    def __call__(self, event: dict[str, Any]) -> None:
        event = {"time": _now(), **event}
        self.events.append(event)
        if self.sink is not None:
            self.sink(event)
        name = event["event"]
        keys = (name, f"{name}:{event.get('gate')}", f"{name}:{event.get('index')}")
        if self.pause_after and self.pause_after in keys:
            # Test-only hook: hold still here so a fault test can SIGKILL at exactly this step.
            self.pause_after = None
            time.sleep(600)


@contextlib.contextmanager
def _release_lock(out_dir: Path) -> Iterator[None]:
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    lock = out_dir.parent / f".{out_dir.name}.lock"
    with open(lock, "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InputError(f"another release is writing {out_dir}", hint="wait for it to finish") from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _adapter_files(adapter_dir: Path) -> list[Path]:
    if adapter_dir.is_symlink() or not adapter_dir.is_dir():
        raise InputError(
            f"{adapter_dir} is not an adapter directory", hint="pass the run directory (RUN_DIR/adapter)"
        )
    files: list[Path] = []
    for entry in sorted(adapter_dir.iterdir()):
        if entry.is_symlink():
            raise InputError(
                f"adapter holds a symlink: {entry.name}", hint="copy the real file into the adapter dir"
            )
        if entry.is_dir() or entry.name.startswith("."):
            continue  # checkpoints and dotfiles are not part of the released adapter
        if entry.name == "gate":
            raise InputError("adapter holds a file named 'gate', which the bundle reserves")
        check_relpath(entry.name)
        files.append(entry)
    if not (adapter_dir / "adapter_config.json").is_file():
        raise InputError(f"{adapter_dir} has no adapter_config.json")
    return files


def _public_key_file(cfg: SigningConfig, directory: Path) -> Path:
    from cryptography.hazmat.primitives import serialization

    assert cfg.private_key is not None
    key = serialization.load_pem_private_key(
        cfg.private_key.read_bytes(), cfg.key_password.encode() if cfg.key_password else None
    )
    path = directory / "public.pem"
    path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return path


def _resumable(out_dir: Path, cfg: SigningConfig, adapter_digest: str, contract_sha: str) -> bool:
    """Whether ``out_dir`` already holds this release, signed with this key (then only publish remains)."""
    if cfg.method != "key" or not (out_dir / SIGNATURE).is_file() or not (out_dir / VERDICT).is_file():
        return False
    try:
        verdict = read_verdict(out_dir)
        if (
            verdict.problems()
            or verdict.adapter_digest != adapter_digest
            or verdict.contract.sha256 != contract_sha
        ):
            return False
        with tempfile.TemporaryDirectory(prefix="gate-resume-") as tmp:
            verify_signature(out_dir, TrustPolicy(method="key", public_key=_public_key_file(cfg, Path(tmp))))
    except Error:
        return False
    return True


def _replace_dir(staging: Path, out_dir: Path) -> None:
    old = None
    if out_dir.exists():
        old = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}"
        os.replace(out_dir, old)
    os.replace(staging, out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _sweep(out_dir: Path) -> None:
    # Leftovers of a killed run (we hold the lock, so nothing else is using them).
    for pattern in (f".{out_dir.name}.staging-*", f".{out_dir.name}.old-*"):
        for p in out_dir.parent.glob(pattern):
            shutil.rmtree(p, ignore_errors=True)


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


def _stage_contract(contract: Any, contract_path: Path, bundle: Path) -> None:
    """Copy the contract, every file it references and the served template into the bundle."""
    shutil.copyfile(contract_path, bundle / CONTRACT, follow_symlinks=False)
    for name, path in contract.referenced_files().items():
        target = bundle / CONTRACT_FILES / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target, follow_symlinks=False)
    atomic_write_text(bundle / CHAT_TEMPLATE, contract.prompt.chat_template)


def _seal(
    verdict: Verdict,
    contract: Any,
    contract_sha: str,
    run_record: Any,
    raw_record: Any,
    fixes: list[str],
    bundle: Path,
    names: list[str],
    scrubber: PathScrubber,
) -> Verdict:
    """Bind the verdict to the bundle's bytes: scrubbed records, contract digest, tools, approval stop."""
    from gate.contract_files import contract_digest

    now_files = {n: file_sha256(p) for n, p in contract.referenced_files().items()}
    if contract_digest(contract.yaml_sha256, now_files) != contract_sha:
        raise GateFailure("the contract's referenced files changed while the gates ran; refusing to release")
    if bundled_contract_digest(bundle) != contract_sha:
        raise GateFailure("the bundled contract files are not those the gates ran under")
    for path in sorted((bundle / "gate" / "reports").iterdir()):
        scrubber.file(path)
    adapter_files = {n: file_sha256(bundle / n) for n in names}
    atomic_write_json(bundle / RUN_RECORD, released_run_record(raw_record, adapter_files, fixes, scrubber))
    reports = {
        name: data
        for name, rel in REPORTS.items()
        if (bundle / rel).is_file() and isinstance(data := read_json(bundle / rel), dict)
    }
    stopped_at, reason = verdict.stopped_at, verdict.reason
    if verdict.passed and contract.approval.required:
        stopped_at = "approval"
        reason = "every gate passed; the contract requires approval (gate release --approve BUNDLE)"
    sealed = verdict.model_copy(
        update={
            "passed": stopped_at is None,
            "stopped_at": stopped_at,
            "reason": reason,
            "contract": verdict.contract.model_copy(update={"sha256": contract_sha}),
            "tools": {**verdict.tools, **release_tools(run_record, reports)},
            "fixes": tuple(fixes),
            "approval_required": contract.approval.required,
        }
    )
    # Gate summaries and reasons quote error messages, which may name local files.
    sealed = Verdict.model_validate(scrubber.json(sealed.model_dump(mode="json")))
    return sealed.model_copy(update={"staged_digest": staged_digest(staged_files(bundle), sealed)})


def _sign(bundle: Path, signing: SigningConfig, emit: EventSink, *, into: Path) -> None:
    """Sign ``bundle`` and move it to ``into``; 'sign finished' means the signed bundle is in place."""
    emit({"event": "gate.start", "gate": "sign", "method": signing.method})
    started = time.monotonic()
    sign_bundle(bundle, signing)
    _replace_dir(bundle, into)
    emit(
        {
            "event": "gate.finish",
            "gate": "sign",
            "status": "passed",
            "seconds": round(time.monotonic() - started, 3),
            "signer": signing.describe(),
        }
    )


def _publish(
    verdict: Verdict,
    out_dir: Path,
    ref: Any,
    emit: _Emitter,
    publish: Any,
    *,
    resumed: bool,
) -> ReleaseResult:
    emit({"event": "gate.start", "gate": "publish", "target": str(ref)})
    started = time.monotonic()
    try:
        result = publish(out_dir, ref, on_event=emit)
    except Error as e:
        emit({"event": "gate.finish", "gate": "publish", "status": "error", "summary": e.message})
        raise
    emit(
        {
            "event": "gate.finish",
            "gate": "publish",
            "status": "passed",
            "seconds": round(time.monotonic() - started, 3),
            **result.to_dict(),
        }
    )
    emit({"event": "release.finish", "released": True, "ref": result.ref, "digest": result.digest})
    return ReleaseResult(verdict, out_dir, result.to_dict(), resumed, emit.events)


def _run_gates(
    request: ReleaseRequest,
    contract: Any,
    run_record: Any,
    adapter: Path,
    adapter_digest: str,
    bundle: Path,
    work: Path,
    emit: _Emitter,
) -> Verdict:
    """Run check, smoke and eval in order; write their reports into ``bundle``; return the verdict."""
    from gate.contracts import resolve_base

    # the contract (or the run) names the base: one resolver, no SmolLM2 fallback
    base_dir = resolve_base(contract, request.base_dir, run=request.run_dir)
    (bundle / "gate").mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    tools: dict[str, str] = {"gate": __version__, "python": platform.python_version(), **tool_versions()}
    with ServerSource(
        contract, base_dir, log_dir=work / "logs", url=request.server_url, on_event=emit
    ) as servers:
        ctx = GateContext(adapter, contract, base_dir, work, servers, baseline=request.baseline)
        outcome = run_gates(
            ctx,
            gates_named(REQUIRED_GATES),
            report_paths={name: bundle / rel for name, rel in REPORTS.items()},
            emit=emit,
        )
    # The verdict names each report by its path inside the bundle.
    results = tuple(
        r.model_copy(update={"report": REPORTS[r.name] if r.report is not None else None})
        for r in outcome.results
    )
    tools.update(outcome.tools)
    stopped = outcome.stopped
    return Verdict(
        passed=stopped is None,
        stopped_at=stopped[0] if stopped else None,
        reason=stopped[1] if stopped else None,
        required_gates=REQUIRED_GATES,
        gates=results,
        contract=ContractRef(name=contract.name, version=contract.metadata.version, sha256=contract.sha256),
        adapter_digest=adapter_digest,
        base_model={
            "name": contract.base_model.name,
            "identity": contract.base_model.identity,
            "architecture": contract.base_model.architecture,
        },
        run={
            k: run_record[k]
            for k in ("name", "run_id", "toolkit", "steps", "spec_sha256", "created_at")
            if isinstance(run_record, dict) and k in run_record
        },
        tools=tools,
        created_at=_now(),
    )


def bundle_file_count(bundle: Path) -> int:
    """Number of signed files in a bundle (for summaries)."""
    return len(list_files(bundle, with_digests=False))
