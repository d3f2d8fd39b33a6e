"""``python -m gate.resolver --config FILE NAME``: one resolution as one JSON line (the plugin's call).

Exit 0 verified (``path`` names the bundle to load), 1 refused (``check`` and
``reason`` say why), 2 the configuration could not be used.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gate.errors import Error
from gate.resolver import ResolverConfig, resolve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gate.resolver", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("name")
    args = parser.parse_args(argv)
    try:
        config = ResolverConfig.from_file(args.config)
    except Error as e:
        print(json.dumps({"name": args.name, "ok": False, "check": "config", "reason": e.message}))
        return 2
    result = resolve(config, args.name)
    print(json.dumps(result.to_dict()))
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
