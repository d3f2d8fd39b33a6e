"""``gate preflight``: will this spec produce a servable adapter? Asked before training for real."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from gate.console import print_json


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "preflight",
        help="check a training spec against a serving contract before training",
        description="Static checks (rank, target modules, base, template, toolkit-made tokenizer/template "
        "changes), then a 2-step training run gated by `gate check` and `gate smoke`. "
        "Exit 0 servable, 1 not servable, 2 bad input.",
    )
    p.add_argument("spec", type=Path, help="training spec (YAML)")
    p.add_argument(
        "--contract",
        type=Path,
        help="serving contract (YAML), or 'smollm2' for the embedded demo contract (required)",
    )
    p.add_argument("--toolkit", required=True, help="toolkit plugin that will train")
    p.add_argument("--out", type=Path, help="keep the few-step run and reports here (default: a temp dir)")
    p.add_argument("--steps", type=int, default=2, help="steps of the trial run (default 2)")
    p.add_argument("--no-smoke", action="store_true", help="skip the smoke gate (no vLLM boot)")
    p.add_argument("--server", help="attach the smoke gate to a running vLLM server at this URL")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gate.contracts import resolve_contract
    from gate.preflight import preflight

    with tempfile.TemporaryDirectory(prefix="gate-preflight-") as tmp:
        out = args.out or Path(tmp)
        report = preflight(
            args.spec,
            resolve_contract(args.contract),
            args.toolkit,
            out_dir=out,
            steps=args.steps,
            smoke=not args.no_smoke,
            server_url=args.server,
        )
        if args.json:
            print_json(report.to_dict())
        else:
            print(f"preflight {'PASSED' if report.passed else 'FAILED'}: {args.spec} with {args.toolkit}")
            for f in report.static:
                print(f"  [{f.status}] {f.check}: {f.message}")
            if report.train_error:
                print(f"  [fail] trial run: {report.train_error}")
            if report.check is not None:
                errs = [f for f in report.check.get("findings", []) if f.get("severity") == "error"]
                print(
                    f"  [{'pass' if report.check.get('passed') else 'fail'}] gate check: {len(errs)} error(s)"
                )
                for e in errs:
                    print(f"      {e.get('rule')}: {e.get('message')}")
            if report.smoke is not None:
                bad = [p["name"] for p in report.smoke.get("probes", []) if not p.get("passed")]
                print(
                    f"  [{'pass' if report.smoke.get('passed') else 'fail'}] gate smoke"
                    + (f": {bad}" if bad else "")
                )
            for n in report.notes:
                print(f"  note: {n}")
    return 0 if report.passed else 1
