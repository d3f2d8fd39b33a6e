"""``gate base``: build the embedded base, or register your own in the local model store."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from gate.console import print_json


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("base", help="build the embedded base (smollm2) or register your own (add, list)")
    bsub = p.add_subparsers(dest="base_command", metavar="ACTION", required=True)

    s = bsub.add_parser("smollm2", help="build the embedded default base model (SmolLM2-135M-Instruct)")
    s.add_argument("--out", type=Path, help="directory to write (default: gate's cache, path printed)")
    s.add_argument("--force", action="store_true", help="overwrite a non-empty --out")
    s.add_argument("--json", action="store_true", help="print a JSON summary")
    s.set_defaults(func=_smollm2)

    a = bsub.add_parser(
        "add",
        help="register a model directory under its identity, so contracts without base_model.source find it",
    )
    a.add_argument("dir", type=Path, metavar="DIR", help="the base model directory")
    a.add_argument("--name", help="a name shown by `gate base list` (default: the directory name)")
    a.add_argument("--json", action="store_true", help="print the store entry as JSON")
    a.set_defaults(func=_add)

    ls = bsub.add_parser("list", help="list the registered bases")
    ls.add_argument("--json", action="store_true", help="print the entries as JSON")
    ls.set_defaults(func=_list)


def _smollm2(args: argparse.Namespace) -> int:
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


def _add(args: argparse.Namespace) -> int:
    from gate.contracts import register_base

    entry = register_base(args.dir, name=args.name)
    if args.json:
        print_json(entry)
    else:
        print(f"registered {entry['path']} ({entry['name']})\n  identity {entry['identity']}")
    return 0


def _list(args: argparse.Namespace) -> int:
    from gate.contracts import registered_bases

    entries = registered_bases()
    if args.json:
        print_json(entries)
    else:
        for e in entries:
            print(f"{e.get('identity', '?')}  {e.get('name', '')}  {e['path']}")
    return 0
