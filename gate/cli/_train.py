"""``gate train``: train a LoRA adapter through a toolkit plugin."""

from __future__ import annotations

import argparse
from pathlib import Path

from gate.console import print_json


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "train",
        help="train a LoRA adapter from a toolkit-neutral spec",
        description="Train SPEC with a toolkit plugin into RUN_DIR (adapter/ + run.json). "
        "Exit 0 trained; 2 bad input or a failed/killed toolkit (the reason is in RUN_DIR/run.json).",
    )
    p.add_argument("spec", type=Path, help="training spec (YAML), e.g. examples/smollm2/train.yaml")
    p.add_argument("--toolkit", required=True, help="toolkit plugin: llamafactory, axolotl, unsloth, ...")
    p.add_argument("--out", type=Path, required=True, metavar="RUN_DIR", help="new or empty run directory")
    p.add_argument("--steps", type=int, help="override training.max_steps (e.g. 2 for a smoke run)")
    p.add_argument("--json", action="store_true", help="print the run record as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gate.training import train

    record = train(args.spec, args.toolkit, args.out, steps=args.steps)
    if args.json:
        print_json(record.model_dump(mode="json"))
    else:
        m = record.metrics
        tps = f"{m.train_tokens_per_second:.0f} tokens/s" if m.train_tokens_per_second else "tokens/s n/a"
        print(
            f"{args.out / 'adapter'}\n  {record.toolkit.name} {record.toolkit.version}: "
            f"{len(m.steps)} steps, "
            f"final loss {m.final_loss:.4f}, {tps}, {record.wall_seconds:.0f}s"
        )
    return 0
