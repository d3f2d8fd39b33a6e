"""``gate pilot``: one spec through several toolkits, every gate on each adapter, a decision matrix."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from gate.console import print_json

if TYPE_CHECKING:
    from gate.pilot import PilotResult


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "pilot",
        help="train one spec through several toolkits, gate every adapter, write a decision matrix",
        description="Train SPEC through each toolkit (--repeats times), run check, smoke and eval on repeat "
        "1 of each against the same contract on one warm vLLM server (booted once, its base-model "
        "canary read before and after every candidate), and write OUT/pilot.json, pilot.md, "
        "pilot.html and pilot-chart.svg. Exit 0 the matrix is complete, 1 some cell could not be "
        "measured (a run or gate failed to produce it), 2 bad input.",
    )
    p.add_argument(
        "spec", type=Path, nargs="?", help="training spec (YAML), e.g. examples/smollm2/train.yaml"
    )
    p.add_argument(
        "--toolkits",
        default="llamafactory,axolotl,unsloth",
        help="comma-separated toolkit plugins (default: llamafactory,axolotl,unsloth)",
    )
    p.add_argument("--repeats", type=int, default=2, help="training runs per toolkit, for drift (default 2)")
    p.add_argument("--steps", type=int, help="override training.max_steps (e.g. 3 for a quick pilot)")
    p.add_argument(
        "--contract",
        help="the contract every adapter is gated against: a YAML file, or `smollm2` for the embedded demo",
    )
    p.add_argument(
        "--base",
        metavar="DIR",
        help="the base model directory (or `smollm2`); default: the contract's base_model.source",
    )
    p.add_argument("--out", type=Path, default=Path("pilot"), help="new or empty directory (default ./pilot)")
    p.add_argument(
        "--weights",
        type=Path,
        help="YAML/JSON: criterion -> weight, plus optional familiarity: {toolkit: 0..1}",
    )
    p.add_argument(
        "--eval-limit",
        type=int,
        metavar="N",
        help="score only the first N documents of each eval task (cheaper, coarser; recorded in the matrix)",
    )
    p.add_argument("--server", metavar="URL", help="use this running vLLM server instead of starting one")
    p.add_argument(
        "--rescore",
        type=Path,
        metavar="OUT",
        help="rebuild and re-score the matrix of the finished pilot OUT from its records (no SPEC; "
        "nothing trains or runs; --weights applies)",
    )
    p.add_argument("--json", action="store_true", help="print the matrix JSON on stdout")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gate.errors import InputError
    from gate.pilot import PilotRequest, rescore, run_pilot

    toolkits = tuple(t.strip() for t in str(args.toolkits).split(",") if t.strip())
    if args.rescore is not None:
        if args.spec is not None:
            raise InputError("--rescore OUT takes no SPEC: it rebuilds a finished pilot's matrix")
        return _show(args, rescore(args.rescore, weights_path=args.weights))
    if args.spec is None:
        raise InputError("no SPEC given", hint="gate pilot SPEC --contract FILE ..., or --rescore OUT")
    result = run_pilot(
        PilotRequest(
            spec_path=args.spec,
            toolkits=toolkits,
            out_dir=args.out,
            repeats=args.repeats,
            steps=args.steps,
            contract_path=args.contract,
            weights_path=args.weights,
            eval_limit=args.eval_limit,
            server_url=args.server,
            base=args.base,
        )
    )
    return _show(args, result)


def _show(args: argparse.Namespace, result: PilotResult) -> int:
    if args.json:
        print_json(result.matrix.to_dict())
    else:
        for sc in sorted(result.matrix.scores, key=lambda s: -s.score):
            print(f"{sc.toolkit:14} {sc.score:6.1f}")
        print(f"{result.files['html']}")
        for line in result.matrix.missing:
            print(f"not measured: {line}")
    return int(result.exit_code)
