"""``gate base``: build the embedded default base model."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from gate.console import print_json


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("base", help="build the embedded default base model (SmolLM2-135M-Instruct)")
    p.add_argument("name", choices=["smollm2"], help="which embedded base to build")
    p.add_argument("--out", type=Path, help="directory to write (default: gate's cache, path printed)")
    p.add_argument("--force", action="store_true", help="overwrite a non-empty --out")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gate.base_model import base_identity, build_smollm2, cached_smollm2

    path = build_smollm2(args.out, force=args.force) if args.out else cached_smollm2()
    info = json.loads((path / "gate-base.json").read_text())
    summary = {
        "path": str(path),
        "identity": base_identity(path),
        "eos_token": info["converter"]["eos_token"],
    }
    if args.json:
        print_json(summary)
    else:
        print(f"{path}\n  identity {summary['identity']}  eos {summary['eos_token']}")
    return 0
