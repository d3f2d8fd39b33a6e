"""``python -m gate.resolver --config FILE NAME``: one resolution as one JSON line (the plugin's call).

With ``--serve`` instead of a name it answers one request per line of stdin
(a name) with one JSON line on stdout, for as long as stdin is open: the vLLM
plugin keeps one such worker, so a resolution costs its verification and not
an interpreter start. The configuration is read again for every request, so an
edit (a revoked digest, a new name) applies to the next one.

Exit 0 verified (``path`` names the bundle to load), 1 refused (``check`` and
``reason`` say why), 2 the configuration could not be used.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from gate.errors import Error
from gate.resolver import ResolverConfig, resolve

#: A request line longer than this is refused unread (names are at most 300 characters).
_MAX_LINE = 4096


def _answer(config_path: Path, name: str) -> tuple[dict[str, Any], int]:
    try:
        config = ResolverConfig.from_file(config_path)
    except Error as e:
        return {"name": name, "ok": False, "check": "config", "reason": e.message}, 2
    result = resolve(config, name)
    return result.to_dict(), 0 if result.ok else 1


def _serve(config_path: Path) -> int:
    while True:
        line = sys.stdin.readline(_MAX_LINE + 1)
        if not line:
            return 0
        name = line.strip()
        if len(line) > _MAX_LINE:
            answer: dict[str, Any] = {
                "name": "",
                "ok": False,
                "check": "request",
                "reason": "request too long",
            }
            sys.stdin.readline()  # drop the rest of the line
        else:
            answer, _ = _answer(config_path, name)
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gate.resolver", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("name", nargs="?")
    mode.add_argument("--serve", action="store_true", help="answer one name per stdin line")
    args = parser.parse_args(argv)
    if args.serve:
        return _serve(args.config)
    answer, code = _answer(args.config, args.name)
    print(json.dumps(answer))
    return code


if __name__ == "__main__":
    sys.exit(main())
