"""``python -m gate.contract``: regenerate the JSON Schema, validate contract files."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from gate import contract
from gate.contract._contract import Contract, schema_json
from gate.errors import InputError


def _main(argv: Sequence[str] | None = None) -> int:
    import argparse

    from gate.console import atomic_write_text
    from gate.resources import contracts_dir

    parser = argparse.ArgumentParser(
        prog="python -m gate.contract", description=(contract.__doc__ or "").partition("\n")[0]
    )
    parser.add_argument("--write-schema", action="store_true", help="regenerate the JSON Schema")
    parser.add_argument("--validate", type=Path, nargs="*", default=[], help="contract files to validate")
    args = parser.parse_args(argv)
    if args.write_schema:
        target = contracts_dir() / "contract.schema.json"
        atomic_write_text(target, schema_json())
        print(f"wrote {target}")
    for file in args.validate:
        try:
            Contract.from_yaml(file)
        except InputError as e:
            print(e.diagnostics(), file=sys.stderr)
            return 2
        print(f"{file}: ok")
    return 0


if __name__ == "__main__":
    sys.exit(_main())
