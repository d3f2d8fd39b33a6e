"""``gate pull REF --out DIR``: fetch, verify, and leave a directory ready for vLLM's --lora-modules."""

from __future__ import annotations

import argparse
from pathlib import Path

from gate.cli._verify import add_trust_options, show_result, trust_from_args
from gate.console import print_json


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("pull", help="pull and verify a released bundle into a directory vLLM can load")
    p.add_argument("ref", help="oci://HOST[:PORT]/REPO:TAG|@sha256:... or oci-layout://PATH:TAG")
    p.add_argument(
        "--out", type=Path, required=True, help="directory to create (moved into place only once verified)"
    )
    p.add_argument("--force", action="store_true", help="replace a non-empty --out")
    add_trust_options(p)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gate.errors import InputError
    from gate.oci import is_oci_ref
    from gate.verify import verify_bundle

    if not is_oci_ref(args.ref):
        raise InputError(f"gate pull takes an oci:// or oci-layout:// reference, not {args.ref!r}")
    policy, expected = trust_from_args(args)
    result = verify_bundle(
        args.ref, policy, expected_contract_sha256=expected, out=args.out, force=args.force
    )
    if args.json:
        print_json(result.to_dict())
    else:
        show_result(result)
    return 0
