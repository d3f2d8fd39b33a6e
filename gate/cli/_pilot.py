"""``gate pilot``: one spec through several toolkits, every gate on each adapter, a decision matrix."""

from __future__ import annotations

import argparse
from pathlib import Path

from gate.console import print_json


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "pilot",
        help="train one spec through several toolkits, gate every adapter, write a decision matrix",
        description="Train SPEC through each toolkit (--repeats times), run check, smoke and eval on repeat "
        "1 of each against the same contract and one vLLM server, and write OUT/pilot.json, pilot.md, "
        "pilot.html and pilot-chart.svg. Exit 0 the matrix is complete, 1 some cell could not be "
        "measured (a run or gate failed to produce it), 2 bad input.",
    )
    p.add_argument("spec", type=Path, help="training spec (YAML), e.g. examples/smollm2/train.yaml")
    p.add_argument(
        "--toolkits",
        default="llamafactory,axolotl,unsloth",
        help="comma-separated toolkit plugins (default: llamafactory,axolotl,unsloth)",
    )
    p.add_argument("--repeats", type=int, default=2, help="training runs per toolkit, for drift (default 2)")
    p.add_argument("--steps", type=int, help="override training.max_steps (e.g. 3 for a quick pilot)")
    p.add_argument("--contract", type=Path, help="contract YAML (default: the embedded SmolLM2 contract)")
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
    p.add_argument("--json", action="store_true", help="print the matrix JSON on stdout")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gate.pilot import PilotRequest, run_pilot

    toolkits = tuple(t.strip() for t in str(args.toolkits).split(",") if t.strip())
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
        )
    )
    if args.json:
        print_json(result.matrix.to_dict())
    else:
        for sc in sorted(result.matrix.scores, key=lambda s: -s.score):
            print(f"{sc.toolkit:14} {sc.score:6.1f}")
        print(f"{result.files['html']}")
        for line in result.matrix.missing:
            print(f"not measured: {line}")
    return result.exit_code
