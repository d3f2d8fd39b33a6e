"""Run a pilot: the same spec through every toolkit, every gate on each adapter, repeats for drift.

A pilot is an ordinary set of runs (``OUT/runs/<toolkit>-<i>/`` are RUN_DIRs made
by :func:`gate.training.train`, releasable with ``gate release --run``). The
gates run through :func:`gate.gates.run_gates`, the code a release uses, on
repeat 1 of each toolkit. The server comes from the one
:class:`gate.gates.ServerSource`: a warm pool booted once for the whole pilot
(its base-model canary read before and after every candidate, a poisoned server
restarted), or the server named by ``--server``. The base model is scored once
and reused as every adapter's comparison. A failing gate is data in the matrix;
a toolkit whose training fails is recorded as a failed run and the pilot goes on.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gate.console import atomic_write_json, err
from gate.errors import Error, InputError
from gate.pilot._build import build_matrix, run_id
from gate.pilot._outputs import PilotResult, write_outputs
from gate.pilot._weights import Weights

__all__ = ["DEFAULT_TOOLKITS", "PilotRequest", "run_pilot"]

DEFAULT_TOOLKITS = ("llamafactory", "axolotl", "unsloth")


@dataclass(frozen=True)
class PilotRequest:
    """What to pilot: the spec, the toolkits, repeats, and where everything goes."""

    spec_path: Path
    toolkits: tuple[str, ...]
    out_dir: Path
    repeats: int = 2
    steps: int | None = None
    #: ``--contract``: a file or a builtin name (required: no silent default).
    contract_path: Path | str | None = None
    weights_path: Path | None = None
    #: Score only the first N documents of each eval task (lm-eval ``limit``); None: every document.
    eval_limit: int | None = None
    #: An already running vLLM server (else one is started for the pilot and stopped after).
    server_url: str | None = None
    #: ``--base``: a directory or a builtin name (else the contract's own ``base_model.source``).
    base: Path | str | None = None


def _validate(req: PilotRequest) -> tuple[Any, Weights]:
    from gate.contract import Contract
    from gate.contracts import resolve_contract
    from gate.spec import TrainSpec
    from gate.training import trainers

    if not req.toolkits:
        raise InputError("--toolkits names no toolkit", hint=f"e.g. {','.join(DEFAULT_TOOLKITS)}")
    if len(set(req.toolkits)) != len(req.toolkits):
        raise InputError(f"--toolkits names a toolkit twice: {','.join(req.toolkits)}")
    for tk in req.toolkits:
        trainers.get(tk)  # InputError with did-you-mean on a typo
    if not 1 <= req.repeats <= 20:
        raise InputError(f"--repeats must be 1..20, not {req.repeats}")
    if req.steps is not None and req.steps < 1:
        raise InputError(f"--steps must be at least 1, not {req.steps}")
    if req.eval_limit is not None and req.eval_limit < 1:
        raise InputError(f"--eval-limit must be at least 1, not {req.eval_limit}")
    TrainSpec.from_yaml(req.spec_path)
    contract = Contract.from_yaml(resolve_contract(req.contract_path))
    weights = Weights.load(req.weights_path) if req.weights_path else Weights()
    out = req.out_dir
    if out.is_symlink():
        raise InputError(f"--out {out} is a symlink", hint="give a real directory path")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"--out {out} exists and is not an empty directory", hint="give a new directory")
    return contract, weights


@contextlib.contextmanager
def _phase(phases: dict[str, float], name: str, what: str) -> Iterator[None]:
    err.print(f"[bold]gate pilot:[/bold] {what}")
    t0 = time.monotonic()
    try:
        yield
    finally:
        phases[name] = phases.get(name, 0.0) + time.monotonic() - t0
        err.print(f"gate pilot: {what}: {time.monotonic() - t0:.0f}s")


def _copy_env_marker(toolkit: str, out_dir: Path) -> None:
    from gate.envs import build_info
    from gate.training import Host, get_trainer

    info = build_info(get_trainer(toolkit).env_spec(Host.detect()))
    if info is not None:
        atomic_write_json(out_dir / "envs" / f"{toolkit}.json", info)


def _train_all(req: PilotRequest, out: Path, phases: dict[str, float]) -> dict[str, bool]:
    from gate.training import train

    ok: dict[str, bool] = {}
    for tk in req.toolkits:
        with _phase(phases, f"train.{tk}", f"training {tk} x{req.repeats}"):
            for i in range(1, req.repeats + 1):
                run_dir = out / "runs" / run_id(tk, i)
                try:
                    train(req.spec_path, tk, run_dir, steps=req.steps)
                    ok[run_id(tk, i)] = True
                except Error as e:
                    # Reliability is a criterion: the failure is in run.json; the pilot goes on.
                    err.print(f"[red]gate pilot: {tk} run {i} failed: {e.message}[/red]")
                    ok[run_id(tk, i)] = False
            _copy_env_marker(tk, out)
    return ok


def _gates_all(
    req: PilotRequest, contract: Any, base_dir: Path, out: Path, ok: dict[str, bool], phases: dict[str, float]
) -> dict[str, Any]:
    """Gate repeat 1 of every trained toolkit on one server; return how that server was used."""
    from gate.bundle import REQUIRED_GATES
    from gate.evaluate import score_base
    from gate.gates import GateContext, ServerSource, gates_named, installed_pools, run_gates
    from gate.serving import WarmPool

    ready = [tk for tk in req.toolkits if ok.get(run_id(tk, 1))]
    serving: dict[str, Any] = {"mode": "attached" if req.server_url else "warm pool", "canary": []}
    if not ready:
        return serving
    with contextlib.ExitStack() as stack:
        pool = None
        if req.server_url is None and installed_pools() is None:
            pool = stack.enter_context(WarmPool(contract, log_dir=out / "server"))
        servers = stack.enter_context(
            ServerSource(contract, base_dir, log_dir=out / "server", url=req.server_url, pool=pool)
        )
        serving["mode"] = {"pooled": "warm pool", "attached": "attached", "started": "started"}[servers.mode]
        # One server for the whole pilot: a server that cannot start fails the smoke and eval gates of
        # every adapter (recorded in their results), not the pilot.
        with (
            _phase(phases, "server.start", "booting the pilot's warm server (canary read at boot)"),
            contextlib.suppress(Error),
        ):
            servers.get()
        base_scores = None
        with _phase(phases, "eval.base", "scoring the base model once"):

            def compute() -> Any:
                return score_base(
                    contract,
                    server=servers.get(),
                    base_dir=base_dir,
                    out_dir=out / "base-eval",
                    limit=req.eval_limit,
                )

            try:
                # The eval gate looks the base up under the same key, so it never scores it again.
                key = (contract.sha256, req.eval_limit)
                live = servers.pool
                base_scores = live.base_scores(base_dir, key, compute) if live is not None else compute()
            except Error as e:
                # Each eval then scores the base itself (slower, same verdicts) or fails with the reason.
                err.print(f"[yellow]gate pilot: base scoring failed ({e.message})[/yellow]")
        for tk in ready:
            run_dir = out / "runs" / run_id(tk, 1)
            with _phase(phases, f"gates.{tk}", f"gates on {tk} (check, smoke, eval)"):
                ctx = GateContext(
                    run_dir / "adapter",
                    contract,
                    base_dir,
                    run_dir / "gates",
                    servers,
                    base_scores=base_scores,
                    eval_limit=req.eval_limit,
                )
                outcome = run_gates(
                    ctx,
                    gates_named(REQUIRED_GATES),
                    report_paths={g: run_dir / "gates" / f"{g}.json" for g in REQUIRED_GATES},
                    stop_on_failure=False,
                    emit=_gate_event(tk),
                )
                serving["canary"].append(_canary_after(servers, base_dir, tk))
            status = ", ".join(f"{r.name} {r.status}" for r in outcome.results)
            err.print(f"gate pilot: {tk}: {status}")
        if servers.pool is not None:
            serving["boots"] = servers.pool.boots
            serving["restarts"] = servers.pool.restarts
    return serving


def _canary_after(servers: Any, base_dir: Path, toolkit: str) -> dict[str, Any]:
    """The pool's canary after a toolkit's last gate (the eval hot-loads the adapter too)."""
    pool = servers.pool
    if pool is None:
        return {"toolkit": toolkit, "ok": None, "reason": "no warm pool (attached server)"}
    try:
        result = pool.check(base_dir)
    except Error as e:
        return {"toolkit": toolkit, "ok": False, "reason": e.message}
    if not result.ok:
        err.print(f"[red]gate pilot: the canary failed after {toolkit}'s gates: {result.reason}[/red]")
    return {"toolkit": toolkit, **result.to_dict()}


def _gate_event(toolkit: str) -> Callable[[dict[str, Any]], None]:
    def sink(event: dict[str, Any]) -> None:
        if event.get("event") == "gate.finish":
            err.print(
                f"gate pilot: {toolkit} {event.get('gate')}: {event.get('status')} ({event.get('seconds')}s)"
            )

    return sink


def eval_metric_keys(contract: Any) -> list[str]:
    """``task/metric,filter`` of every metric the contract's eval judges."""
    return [f"{t.task}/{t.metric},{t.filter}" for t in contract.eval.tasks]


def _spec_steps(spec_path: Path) -> int | None:
    from gate.spec import TrainSpec

    return TrainSpec.from_yaml(spec_path).training.max_steps


def _base_dir(req: PilotRequest, contract: Any) -> Path:
    """The base every adapter is gated on: ``--base``, else the contract's own source (checked up front)."""
    from gate.base_model import base_identity
    from gate.contracts import resolve_base

    base_dir = resolve_base(contract, req.base)
    identity = base_identity(base_dir)
    if identity != contract.base_model.identity:
        raise InputError(
            f"the base model {base_dir} is not the one {contract.source_path} names "
            f"({identity} != {contract.base_model.identity})",
            hint="pass --base with the contract's base model",
        )
    return base_dir


def run_pilot(req: PilotRequest) -> PilotResult:
    """Train, gate and compare (see the module docstring); write the matrix files into ``req.out_dir``.

    Raises :class:`InputError` for bad input before anything runs.
    """
    from gate.training import Host

    contract, weights = _validate(req)
    base_dir = _base_dir(req, contract)
    out = req.out_dir
    out.mkdir(parents=True, exist_ok=True)
    weights_file: str | None = None
    if req.weights_path is not None:
        (out / "inputs").mkdir(exist_ok=True)
        weights_file = f"inputs/weights{req.weights_path.suffix or '.yaml'}"
        shutil.copyfile(req.weights_path, out / weights_file)
    phases: dict[str, float] = {}
    started = time.monotonic()
    ok = _train_all(req, out, phases)
    serving = _gates_all(req, contract, base_dir, out, ok, phases)
    t0 = time.monotonic()
    spec_bytes = Path(req.spec_path).read_bytes()
    matrix = build_matrix(
        out,
        toolkits=req.toolkits,
        repeats=req.repeats,
        eval_metrics=eval_metric_keys(contract),
        weights=weights,
        weights_file=weights_file,
        spec={"name": Path(req.spec_path).name, "sha256": hashlib.sha256(spec_bytes).hexdigest()},
        contract={
            "name": contract.name,
            "file": contract.source_path.name,
            "sha256": contract.sha256,
        },
        settings={
            "toolkits": list(req.toolkits),
            "repeats": req.repeats,
            # The steps every run took: the override, else the spec's own max_steps.
            "steps": req.steps if req.steps is not None else _spec_steps(req.spec_path),
            "eval_limit": req.eval_limit,
            "device": Host.detect().device_name,
            "server": serving["mode"],
            "serving": serving,
        },
        phases={**phases, "matrix": time.monotonic() - t0, "total": time.monotonic() - started},
    )
    files = write_outputs(matrix, out)
    verdict = "complete" if matrix.complete else f"INCOMPLETE ({len(matrix.missing)} cell(s) not measured)"
    err.print(f"gate pilot: matrix {verdict}: {files['html']}")
    return PilotResult(matrix, out, files)
