"""``gate contract init|verify``: write a contract from a base, or check one against it."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gate.console import err, print_json

if TYPE_CHECKING:
    from gate.contract import Contract


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("contract", help="write a contract from a base model, or verify one against it")
    csub = p.add_subparsers(dest="contract_command", metavar="ACTION", required=True)

    i = csub.add_parser("init", help="read a base directory and write its complete, commented contract")
    i.add_argument(
        "--base", type=Path, required=True, help="the base model directory (config, tokenizer, weights)"
    )
    i.add_argument("--out", type=Path, required=True, help="the contract file to write")
    i.add_argument("--name", help="contract name (default: <base directory name>-vllm)")
    i.add_argument(
        "--runtime-version",
        default=None,
        help="PEP 440 range of the vLLM versions served (default: >=0.26,<0.33)",
    )
    i.add_argument("--max-lora-rank", type=int, default=16, help="vLLM's --max-lora-rank (default 16)")
    i.add_argument("--template", type=Path, help="serve this chat template instead of the base's own")
    i.add_argument("--force", action="store_true", help="overwrite an existing --out")
    i.add_argument("--json", action="store_true", help="print a JSON summary")
    i.set_defaults(func=_init)

    v = csub.add_parser("verify", help="re-derive every base fact of a contract and list each mismatch")
    v.add_argument("contract", type=Path, help="the contract file")
    v.add_argument("--base", type=Path, required=True, help="the base model directory to compare with")
    v.add_argument(
        "--no-render", action="store_true", help="skip re-rendering the fixtures (no tokenizer run)"
    )
    v.add_argument("--json", action="store_true", help="print the mismatches as JSON")
    v.set_defaults(func=_verify)


def _init(args: argparse.Namespace) -> int:
    from gate.contracts import DEFAULT_VLLM_VERSION, init_contract

    with err.status(f"reading {args.base} and rendering fixtures with its tokenizer ..."):
        result = init_contract(
            args.base,
            args.out,
            name=args.name,
            vllm_version=args.runtime_version or DEFAULT_VLLM_VERSION,
            max_lora_rank=args.max_lora_rank,
            template_file=args.template,
            force=args.force,
        )
    summary = {
        "path": str(result.path),
        "name": result.name,
        "identity": result.identity,
        "modules": result.modules,
        "fixtures": result.fixtures,
        "skipped_fixtures": result.skipped_fixtures,
        "todo": result.todo,
        "lora_support": result.lora_support,
    }
    if args.json:
        print_json(summary)
        return 0
    print(f"wrote {result.path} ({result.name})")
    print(f"  identity {result.identity}")
    print(f"  modules  {', '.join(result.modules)}")
    print(f"  fixtures {', '.join(result.fixtures)}")
    for name, why in result.skipped_fixtures.items():
        print(f"  fixture {name} left out: {why}")
    if not result.lora_support["served"]:
        # every adapter of this contract fails check and smoke: say so now, not at the first release
        print(f"  serving.lora_support: NOT SERVED: {result.lora_support['reason']}")
    print(f"  fill in: {', '.join(result.todo)} (marked TODO(gate contract init))")
    return 0


def _power(contract: Contract) -> tuple[list[dict[str, Any]], list[str], bool]:
    """The eval tasks' power before any run: JSON rows, warning lines, and whether the contract fails them."""
    from gate.errors import InputError
    from gate.evaluate import power_plan

    try:
        plans = power_plan(contract)
    except InputError as e:
        return [], [f"eval power not stated: {e.message}"], False
    confidence = contract.eval.confidence
    lines = [p.message(confidence) for p in plans if p.underpowered]
    fails = contract.eval.underpowered == "fail" and bool(lines)
    return [p.to_dict() for p in plans], lines, fails


def _verify(args: argparse.Namespace) -> int:
    from gate.contract import Contract
    from gate.contracts import verify_against_base
    from gate.identity import compute_identity

    contract = Contract.from_yaml(args.contract)
    mismatches = verify_against_base(contract, args.base, render=not args.no_render)
    power, weak, power_fails = _power(contract)
    failed = bool(mismatches) or power_fails
    if args.json:
        print_json(
            {
                "contract": str(args.contract),
                "base": str(args.base),
                "identity": compute_identity(args.base).identity,
                "ok": not failed,
                "mismatches": [m.to_json() for m in mismatches],
                "power": power,
                "underpowered": weak,
            }
        )
        return 1 if failed else 0
    if not mismatches:
        print(f"{args.contract}: every base fact matches {args.base}")
    else:
        print(f"{args.contract}: {len(mismatches)} mismatch(es) with {args.base}")
        for m in mismatches:
            print(f"  {m.field}: {m.message}")
    label = "error" if power_fails else "warning"
    for line in weak:
        print(f"  {label}: {line} (eval.underpowered: {contract.eval.underpowered})")
    return 1 if failed else 0
