"""``gate check``: the packaging-contract gate (static; no GPU, no torch)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "check",
        help="check an adapter directory against a serving contract (static, under a second)",
        description="Check a LoRA adapter directory against a serving contract: files, adapter_config.json, "
        "tensor names/shapes/ranks (headers only), NaN/Inf (one streamed pass), tokenizer and chat template. "
        "Exit status: 0 passed, 1 an error-severity finding, 2 the input could not be read.",
    )
    p.add_argument(
        "adapter_dir",
        type=Path,
        nargs="?",
        metavar="ADAPTER_DIR",
        help="the adapter directory (PEFT layout), or a gate run directory holding adapter/",
    )
    p.add_argument(
        "--contract",
        type=Path,
        metavar="FILE",
        help="contract YAML, or 'smollm2' for the embedded demo contract (required)",
    )
    base = p.add_mutually_exclusive_group()
    base.add_argument(
        "--base",
        type=Path,
        metavar="BASE_DIR",
        help="the real base model directory: compare shapes, tokenizer and identity against it "
        "(default: the base the contract or the run names, else an error)",
    )
    base.add_argument(
        "--no-base",
        action="store_true",
        help="packaging checks only: do not compare against the base (its identity is not checked)",
    )
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    p.add_argument("--out", type=Path, metavar="FILE", help="also write the JSON report to FILE (atomically)")
    p.add_argument(
        "--list-rules", action="store_true", help="list every rule (ID, severity, what, fix) and exit"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gate.check import resolve_adapter_dir, run_check
    from gate.console import atomic_write_json, err, plain, print_json
    from gate.contract import Contract
    from gate.contracts import resolve_base, resolve_contract, run_of
    from gate.errors import InputError

    if args.list_rules:
        return _list_rules(as_json=args.json)
    if args.adapter_dir is None:
        raise InputError("gate check needs ADAPTER_DIR", hint="gate check path/to/adapter [--base BASE_DIR]")
    contract = Contract.from_yaml(resolve_contract(args.contract))
    adapter_dir = resolve_adapter_dir(args.adapter_dir)
    if adapter_dir != args.adapter_dir:
        err.print(plain(f"gate: {args.adapter_dir} is a run directory; checking {adapter_dir}"))
    base_dir = None
    if not args.no_base:
        base_dir = resolve_base(
            contract, args.base, run=run_of(adapter_dir), alternative=" (or --no-base: packaging only)"
        )
    report = run_check(adapter_dir, contract, base_dir)
    if args.out:
        atomic_write_json(args.out, report.to_dict())
    if args.json:
        print_json(report.to_dict())
    else:
        _print_table(report)
    return 0 if report.passed else 1


def _print_table(report: object) -> None:
    from rich.table import Table
    from rich.text import Text

    from gate.check import CheckReport
    from gate.console import out, plain

    assert isinstance(report, CheckReport)
    counts = report.to_dict()["summary"]
    line = Text.assemble(
        plain(f"gate check {report.adapter_dir} against {report.contract_name}: "),
        ("PASSED", "bold green") if report.passed else ("FAILED", "bold red"),
        f" ({counts['errors']} error(s), {counts['warnings']} warning(s), {counts['rules_run']} rules, "
        f"{report.seconds:.2f} s)",
    )
    out.print(line)
    if not report.findings:
        return
    table = Table(show_lines=False, expand=False)
    table.add_column("severity")
    table.add_column("rule", no_wrap=True)
    table.add_column("file")
    table.add_column("finding / fix")
    for f in report.findings:
        color = "red" if f.severity == "error" else "yellow"
        text = Text.assemble(plain(f.message), "\n", plain(f"fix: {f.hint}", "dim"))
        table.add_row(Text(f.severity, style=color), f.rule, plain(f.path), text)
    out.print(table)


def _list_rules(*, as_json: bool) -> int:
    from rich.table import Table

    from gate.console import out, plain, print_json
    from gate.rules import all_rules

    rules = all_rules()
    if as_json:
        print_json([{"rule": r.id, "severity": r.severity, "title": r.title, "hint": r.hint} for r in rules])
        return 0
    table = Table()
    for column in ("rule", "severity", "what it catches", "fix"):
        table.add_column(column)
    for r in rules:
        table.add_row(r.id, r.severity, plain(r.title), plain(r.hint))
    out.print(table)
    return 0
