"""``gate reproduce``: re-run a training run from its run.json and measure drift."""

from __future__ import annotations

import argparse
from pathlib import Path

from gate.console import print_json


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "reproduce",
        help="re-run a training run from its record; report loss drift and adapter digests",
        description="Re-run RUN_DIR (same toolkit, spec, dataset snapshot, base) and compare per-step losses "
        "and adapter file digests. Exit 0 within --tolerance, 1 drift over it, 2 bad input.",
    )
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a directory written by `gate train`")
    p.add_argument(
        "--out", type=Path, help="where the reproduction goes (default: RUN_DIR.reproduce-N beside it)"
    )
    p.add_argument(
        "--tolerance",
        type=float,
        default=0.05,
        help="largest per-step absolute loss drift accepted (default 0.05)",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gate.reproduce import reproduce

    report = reproduce(args.run_dir, out_dir=args.out, tolerance=args.tolerance)
    if args.json:
        print_json(report.to_dict())
    else:
        det = "bit-deterministic" if report.bit_deterministic else "NOT bit-deterministic"
        print(
            f"{report.verdict}: {report.toolkit} on {report.device} is {det} here\n"
            f"  {len(report.steps)} steps compared, max |loss drift| {report.max_abs_loss_drift:.3g}, "
            f"mean {report.mean_abs_loss_drift:.3g} (tolerance {report.tolerance})\n"
            f"  adapter files identical: "
            + ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in report.adapter_files.items())
            + f"\n  environment lock {'same' if report.environment_match else 'DIFFERENT'}; "
            f"reproduction in {report.reproduction_dir}"
        )
    return 0 if report.passed else 1
