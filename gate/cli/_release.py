"""``gate release``: contract -> smoke -> eval -> sign -> publish, stopping at the first failed gate.

``gate release --approve BUNDLE --approver NAME --to REF`` signs and publishes a
bundle a release left at ``approval`` (every gate passed, the contract requires a
person's approval), with the approval in its verdict; no gate runs again.

Exit 0 released, 1 a gate failed or the staged bundle changed (nothing signed or published), 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import IO, Any

from rich.markup import escape

from gate.cli._eval import add_baseline_options, baseline_from_args
from gate.console import err, out, print_json


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from gate.signing import SIGN_METHODS

    p = sub.add_parser("release", help="run every gate, then sign and publish the bundle (fail-closed)")
    p.add_argument("--run", type=Path, help="run directory (RUN_DIR/adapter + RUN_DIR/run.json)")
    p.add_argument(
        "--contract",
        type=Path,
        help="contract file, or 'smollm2' for the embedded demo contract (required with --run)",
    )
    p.add_argument(
        "--to",
        dest="target",
        help="oci://HOST[:PORT]/REPO:TAG or oci-layout://PATH:TAG (default: the contract's publish.target)",
    )
    p.add_argument("--out", type=Path, help="bundle directory to write (default: ./gate-release/<run name>)")
    p.add_argument(
        "--base",
        type=Path,
        help="base model directory, or 'smollm2' (default: the base the run or the contract names)",
    )
    p.add_argument("--server", help="URL of a running vLLM server to use for smoke and eval")
    add_baseline_options(p)
    p.add_argument(
        "--sign-method",
        choices=SIGN_METHODS,
        default=os.environ.get("GATE_SIGN_METHOD", "key"),
        help="signing method (env: GATE_SIGN_METHOD)",
    )
    p.add_argument(
        "--sign-key",
        type=Path,
        default=_env_path("GATE_SIGN_KEY"),
        help="EC private key PEM (env: GATE_SIGN_KEY; password in GATE_SIGN_KEY_PASSWORD)",
    )
    p.add_argument("--sign-cert", type=Path, help="signing certificate PEM (method certificate)")
    p.add_argument(
        "--sign-chain", type=Path, action="append", default=[], help="chain certificate PEM (repeatable)"
    )
    p.add_argument(
        "--approve",
        type=Path,
        metavar="BUNDLE",
        help="approve the staged bundle a release left at 'approval': sign and publish it (needs --to)",
    )
    p.add_argument("--approver", help="with --approve: who approves (recorded in the signed verdict)")
    p.add_argument(
        "--digest",
        help="with --approve: the staged digest you were shown (refused if the bundle's differs)",
    )
    p.add_argument("--events", help="write every event as a JSON line to this file ('-' for stderr)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument(
        "--summary",
        type=Path,
        help="also write the verdict as markdown tables to this file (in GitHub Actions gate "
        "writes them to the job summary and prints ::error annotations itself)",
    )
    p.set_defaults(func=run)


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value) if value else None


def run(args: argparse.Namespace) -> int:
    from gate import github
    from gate.errors import Error

    try:
        return _run(args)
    except Error as e:
        # No verdict to show: still leave the reason on the run page (a no-op outside Actions).
        github.report_error("gate release", e.message, hint=e.hint, summary_file=args.summary)
        raise


def _run(args: argparse.Namespace) -> int:
    from gate import github
    from gate.approve import Approver, approve_release
    from gate.contract import Contract
    from gate.contracts import resolve_contract
    from gate.errors import InputError
    from gate.pipeline import ReleaseRequest, ReleaseResult, run_release
    from gate.signing import SigningConfig

    if (args.run is None) == (args.approve is None):
        raise InputError("give --run RUN_DIR (release a run) or --approve BUNDLE (approve a staged one)")
    if args.approve is not None and (not args.approver or not args.target):
        raise InputError("--approve needs --approver NAME and --to REF (the tag to publish)")
    # an approval re-gates nothing: the staged bundle carries its contract
    contract_path = resolve_contract(args.contract) if args.run is not None else args.contract
    signing = SigningConfig(
        method=args.sign_method,
        private_key=args.sign_key,
        key_password=os.environ.get("GATE_SIGN_KEY_PASSWORD"),
        certificate=args.sign_cert,
        chain=tuple(args.sign_chain),
    )
    sink: IO[str] | None = None
    if args.events == "-":
        sink = sys.stderr
    elif args.events:
        sink = open(args.events, "a", encoding="utf-8")  # noqa: SIM115 - closed below

    def on_event(event: dict[str, Any]) -> None:
        if sink is not None:
            sink.write(json.dumps(event, default=str) + "\n")
            sink.flush()
        if not args.json:
            _show_event(event)

    try:
        result: ReleaseResult
        if args.approve is not None:
            approver = Approver(by=args.approver, via="cli", subject=args.approver)
            result = approve_release(
                args.approve, approver, signing, args.target, expected_digest=args.digest, on_event=on_event
            )
        else:
            assert contract_path is not None
            contract = Contract.from_yaml(contract_path)
            request = ReleaseRequest(
                run_dir=args.run,
                contract_path=contract_path,
                target=args.target or contract.publish.target,
                signing=signing,
                out_dir=args.out or Path("gate-release") / args.run.resolve().name,
                base_dir=args.base,
                server_url=args.server,
                baseline=baseline_from_args(args, contract),
            )
            result = run_release(request, on_event=on_event)
    finally:
        if sink is not None and sink is not sys.stderr:
            sink.close()
    github.report(
        github.release_verdict(result.to_dict(), bundle_dir=result.bundle_dir, contract=contract_path),
        summary_file=args.summary,
    )
    if args.json:
        print_json(result.to_dict())
    elif result.passed:
        assert result.published is not None
        out.print(f"[bold green]released[/] {result.published['ref']}")
        out.print(f"  bundle {result.bundle_dir}")
    elif result.stopped_at == "approval":
        out.print(f"[bold yellow]awaiting approval[/]: {escape(str(result.reason))}")
        out.print(f"  staged bundle (every gate passed, unsigned) {result.bundle_dir}")
        out.print(f"  staged digest {result.verdict.staged_digest}")
    else:
        out.print(f"[bold red]not released[/]: {escape(str(result.reason))}")
        out.print(f"  bundle (unsigned, not published) {result.bundle_dir}")
    return 0 if result.passed else 1


def _show_event(event: dict[str, Any]) -> None:
    kind = event["event"]
    if kind == "gate.start":
        err.print(f"[bold]{event['gate']}[/] ...")
    elif kind == "gate.finish":
        colour = "green" if event["status"] == "passed" else "red"
        summary = escape(str(event.get("summary") or ""))
        err.print(
            f"[bold]{event['gate']}[/] [{colour}]{event['status']}[/] {summary} ({event.get('seconds', 0)}s)"
        )
    elif kind == "publish.blob":
        verb = "uploaded" if event["uploaded"] else "present "
        err.print(f"  {verb} {event['path']} ({event['size']} bytes)")
    elif kind in ("publish.referrer", "publish.tag", "release.resume", "release.approved"):
        err.print(
            f"  {kind.split('.', 1)[1]}: "
            + ", ".join(f"{k}={v}" for k, v in event.items() if k not in ("event", "time"))
        )
