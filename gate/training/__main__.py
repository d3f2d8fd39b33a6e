"""``python -m gate.training --write-schema``: regenerate ``contracts/run.schema.json``."""

from __future__ import annotations

import sys

from gate.console import atomic_write_text
from gate.training.record import run_schema_json


def _main(argv: list[str] | None = None) -> int:
    import argparse

    from gate.resources import contracts_dir

    parser = argparse.ArgumentParser(prog="python -m gate.training")
    parser.add_argument("--write-schema", action="store_true", help="regenerate contracts/run.schema.json")
    args = parser.parse_args(argv)
    if args.write_schema:
        target = contracts_dir() / "run.schema.json"
        atomic_write_text(target, run_schema_json())
        print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(_main())
