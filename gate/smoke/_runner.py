"""Run every smoke probe against one server (started, attached or from a warm pool)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from gate.contract import Contract
from gate.errors import Error, InputError, ServerError
from gate.serving import DEFAULT_READY_TIMEOUT, ServingRuntime, runtime_for
from gate.smoke import _probes
from gate.smoke._parity import parity
from gate.smoke._report import ProbeResult, SmokeReport
from gate.smoke._run import EventSink, SmokeRun, adapter_dir_checked

__all__ = ["ServerArg", "run_smoke"]

#: A server, a function returning one on first use (the gate runner's attach-or-start), or None (boot one).
ServerArg = ServingRuntime | Callable[[], ServingRuntime] | None


def run_smoke(
    adapter_dir: Path,
    contract: Contract,
    *,
    base_dir: Path,
    server: ServerArg,
    out_dir: Path,
    on_event: EventSink | None = None,
    ready_timeout: float = DEFAULT_READY_TIMEOUT,
    fail_fast: bool = False,
    lora_name: str | None = None,
    reference: object | None = None,
) -> SmokeReport:
    """Run every smoke probe for ``adapter_dir`` and write ``out_dir/smoke-report.json``.

    With ``server=None`` a server of the contract's runtime is booted for this run (logs
    under ``out_dir/logs``) and always stopped; otherwise ``server`` (or what the callable
    returns) is used and left running. A server that cannot start, dies or hangs fails the
    report; it does not raise. ``fail_fast`` skips the probes after the first failure;
    ``on_event`` receives ``{"gate": "smoke", "probe": ..., "status": ...}`` as probes run.
    ``lora_name`` is the name the adapter is hot-loaded under (warm pools derive it from the
    adapter digest); ``reference`` is a warm parity reference (:class:`ReferenceProcess`).
    Raises :class:`InputError` for an adapter directory or base that cannot be used.
    """
    from gate.base_model import base_identity

    adapter_dir = adapter_dir_checked(adapter_dir)
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
    run = SmokeRun(adapter_dir, contract, base_dir, out_dir, on_event, lora_name=lora_name)
    run.reference = reference
    if not _runtime_serves_lora(run):
        return run.finish()  # nothing to boot: the contract's runtime serves no LoRA on this base
    owned: ServingRuntime | None = None
    live: ServingRuntime | None = None
    try:
        run.begin("server")
        try:
            if server is None:
                live = owned = runtime_for(contract).start(
                    base_dir, contract, log_dir=out_dir / "logs", ready_timeout=ready_timeout
                )
            else:
                live = server if isinstance(server, ServingRuntime) else server()
            healthy = live.alive()
        except ServerError as e:
            run.add(ProbeResult("server", "fail", e.message, run.elapsed(), {"hint": e.hint}))
        else:
            run.server_info = live.describe()
            boot = run.server_info.get("boot_seconds")
            message = f"booted in {boot:.1f}s" if owned is not None and boot else "healthy"
            run.add(
                ProbeResult(
                    "server",
                    "pass" if healthy else "fail",
                    message if healthy else f"the server at {live.url} is not healthy",
                    run.elapsed(),
                    run.server_info,
                )
            )
        if live is not None and run.ok("server"):
            run.server = live
            _probe_all(run, live, fail_fast=fail_fast)
    finally:
        if owned is not None:
            owned.stop()
    return run.finish()


def _runtime_serves_lora(run: SmokeRun) -> bool:
    """The contract's statement (or gate's runtime table), before any boot; a ``lora_support`` probe
    fails the report where the runtime serves no LoRA on the base."""
    from gate.rules import lora_support

    support = lora_support(run.contract)
    if support.served:
        return True
    run.begin("lora_support")
    run.add(ProbeResult("lora_support", "fail", support.reason, run.elapsed(), support.model_dump()))
    run.skip_rest("the contract's runtime serves no LoRA on this base (lora_support), so nothing was booted")
    return False


Probe = Callable[[SmokeRun, ServingRuntime], ProbeResult]


def _probe_all(run: SmokeRun, server: ServingRuntime, *, fail_fast: bool) -> None:
    steps: list[tuple[str, Probe]] = [
        ("weights_scan", _probes.weights_scan),
        ("load", _probes.load),
        ("models", _probes.models),
        ("chat", _probes.chat),
        ("completions", _probes.completions),
        ("stops", _probes.stops),
        ("control_tokens", _probes.control_tokens),
        ("logprob_shift", _probes.logprob_shift),
        ("long_prompts", _probes.long_prompts),
        ("parity", parity),
        ("latency", _probes.latency),
    ]
    loaded = False
    skip_reason: str | None = None
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
                result = probe(run, server)
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
            _probes.unload(run, server)
    if skip_reason is not None:
        run.skip_rest(skip_reason)
