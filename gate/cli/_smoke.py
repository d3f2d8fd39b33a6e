"""``gate smoke``: hot-load an adapter into real vLLM and probe it."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "smoke",
        help="boot (or attach to) real vLLM, hot-load the adapter and probe it",
        description=(
            "Hot-load a LoRA adapter into a real vLLM server and probe it: listed with the right parent, "
            "answers through chat and completions, stops on EOS, no control tokens leak, changes the "
            "base's log-probs, greedy parity with transformers + PEFT, latency budgets. "
            "Exit status: 0 passed, 1 a probe failed (or the server died), 2 the input could not be used."
        ),
    )
    p.add_argument(
        "adapter_dir", type=Path, metavar="ADAPTER_DIR", help="the adapter directory (PEFT layout)"
    )
    p.add_argument(
        "--contract",
        type=Path,
        metavar="FILE",
        default=os.environ.get("GATE_CONTRACT"),
        help="contract YAML, or 'smollm2' for the embedded demo contract (required; env GATE_CONTRACT)",
    )
    p.add_argument(
        "--server",
        metavar="URL",
        default=os.environ.get("GATE_SERVER_URL"),
        help="a running vLLM server started with --enable-lora and runtime LoRA updating; it must see "
        "ADAPTER_DIR's path and is verified against the contract (version, base, LoRA limits) before any "
        "probe (default: boot one for this run and stop it after; env GATE_SERVER_URL)",
    )
    p.add_argument(
        "--pool",
        action="store_true",
        help="attach to the warm server a `gate serve` on this host keeps for this contract's base and "
        "serving configuration (verified like --server); boot one when there is none",
    )
    p.add_argument(
        "--base",
        type=Path,
        metavar="DIR",
        help="base model directory, or 'smollm2' (default: the base the contract or the run names)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path("gate-smoke"),
        help="output directory for the report and logs (default: ./gate-smoke)",
    )
    p.add_argument(
        "--ready-timeout",
        type=float,
        default=900.0,
        metavar="S",
        help="seconds to wait for a booted server's /health (default 900)",
    )
    p.add_argument(
        "--fail-fast", action="store_true", help="skip the remaining probes after the first failure"
    )
    p.add_argument("--json", action="store_true", help="print the report as one JSON object on stdout")
    p.set_defaults(func=run)


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Make SIGTERM unwind like Ctrl-C, so the server gate started is stopped on the way out."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (e.g. called from a service worker)
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(args: argparse.Namespace) -> int:
    from gate.console import err, print_json, progress
    from gate.contract import Contract
    from gate.contracts import resolve_base, resolve_contract, run_of
    from gate.gates import run_one
    from gate.smoke import PROBES, SmokeReport

    contract = Contract.from_yaml(resolve_contract(args.contract))
    base = resolve_base(contract, args.base, run=run_of(args.adapter_dir))
    with _sigterm_as_interrupt(), progress(transient=True) as bar:
        task = bar.add_task("smoke", total=len(PROBES), status="")

        def on_event(event: dict[str, Any]) -> None:
            probe = event.get("probe")
            if event.get("status") == "running":
                bar.update(task, status=f"{probe} ...")
            elif probe:
                bar.advance(task)
                bar.update(task, status=f"{probe}: {event.get('status')}")

        report = run_one(
            "smoke",
            args.adapter_dir,
            contract,
            base_dir=base,
            work_dir=args.out,
            report_dir=args.out,
            server_url=args.server,
            use_pool=args.pool,
            ready_timeout=args.ready_timeout,
            fail_fast=args.fail_fast,
            on_event=on_event,
        )
        assert isinstance(report, SmokeReport)
    if args.json:
        print_json(report.to_dict())
    else:
        from gate.console import out

        out.print(report.summary(), markup=False, highlight=False)
    if not report.passed:
        err.print(f"gate smoke: failed probes: {', '.join(report.failed_probes)}", markup=False)
    return 0 if report.passed else 1
