"""The ``gate`` command line: thin shells over the library.

Each subcommand lives in ``gate/cli/_<name>.py`` with ``register(subparsers)``;
the handler it sets returns the exit status. Errors are caught once, here.
Exit statuses: 0 passed, 1 a gate failed, 2 the input could not be used.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from gate import __version__
from gate.errors import Error

__all__ = ["main"]

# Order is the order shown in --help. A module that does not exist is skipped.
_COMMANDS = (
    "base",
    "contract",
    "env",
    "check",
    "train",
    "reproduce",
    "preflight",
    "smoke",
    "eval",
    "release",
    "verify",
    "pull",
    "serve",
    "serve-config",
    "pilot",
)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The argument parser with every available subcommand, or only ``only``.

    Registering one command imports only its module: ``gate check`` must not pay
    for importing the signing or service stacks it never uses.
    """
    parser = argparse.ArgumentParser(
        prog="gate", description="Release and serving-handoff gatekeeper for fine-tuned LLM adapters."
    )
    parser.add_argument("--version", action="version", version=f"gate {__version__}")
    parser.add_argument(
        "--verbose",
        action="store_true",
        default=bool(os.environ.get("GATE_VERBOSE")),
        help="show tracebacks for errors (env: GATE_VERBOSE)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in (only,) if only else _COMMANDS:
        module_name = f"gate.cli._{name.replace('-', '_')}"
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name == module_name:
                continue
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``gate`` command line and return its exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # The first bare word names the command; options before it take no value.
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command if command in _COMMANDS else None)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except Error as e:
        if args.verbose:
            raise
        from gate.terminal import terminal_safe

        print(f"gate: error: {terminal_safe(e.diagnostics())}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("gate: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
