"""``${{ }}`` and ``if:`` evaluated by GitHub's own ``@actions/expressions`` (js/evaluate.mjs).

One Node process per :class:`Expressions`, one JSON line per request. Nothing is evaluated in
Python: a value with an expression, a condition, ``runs-on``, ``timeout-minutes``, outputs and
inputs all go through the package GitHub's language service uses, so functions (``startsWith``,
``fromJSON``, ``format``...), comparisons with GitHub's coercions, and property access on
something missing (``null``, i.e. an empty string: the silent failure of a typo) behave as there.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

JS = Path(__file__).resolve().parents[1] / "js"
Status = Literal["success", "failure", "cancelled"]

#: Every context the runner provides; one missing from a request is an empty object.
CONTEXTS = (
    "github",
    "env",
    "vars",
    "job",
    "jobs",
    "steps",
    "runner",
    "secrets",
    "strategy",
    "matrix",
    "needs",
    "inputs",
)


class ExpressionError(Exception):
    """GitHub's evaluator refused an expression (syntax, unknown function, bad arguments)."""


class Expressions:
    """A Node process running GitHub's expression evaluator."""

    def __init__(self) -> None:
        node = shutil.which("node")
        if node is None or not (JS / "node_modules" / "@actions" / "expressions").is_dir():
            raise RuntimeError(
                "node and tests/workflows/js/node_modules are needed: run `make workflow-tools`"
            )
        self._proc = subprocess.Popen(
            [node, "evaluate.mjs"],
            cwd=JS,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )

    def close(self) -> None:
        if self._proc.poll() is None:
            assert self._proc.stdin is not None
            self._proc.stdin.close()
            self._proc.wait(timeout=10)

    def _ask(self, kind: str, text: str, contexts: Mapping[str, Any], status: Status) -> Any:
        assert self._proc.stdin is not None and self._proc.stdout is not None
        full = {name: contexts.get(name) or {} for name in CONTEXTS}
        request = {"kind": kind, "text": text, "contexts": full, "status": status}
        self._proc.stdin.write(json.dumps(request) + "\n")
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError("the expression evaluator (node evaluate.mjs) exited")
        reply = json.loads(line)
        if "error" in reply:
            raise ExpressionError(f"{text!r}: {reply['error']}")
        return reply["value"]

    def value(self, text: Any, contexts: Mapping[str, Any], status: Status = "success") -> Any:
        """A workflow value: strings with ``${{ }}`` evaluated (a whole-value expression keeps its type);
        mappings and lists evaluated item by item; anything else as it is."""
        if isinstance(text, str):
            return self._ask("template", text, contexts, status) if "${{" in text else text
        if isinstance(text, Mapping):
            return {k: self.value(v, contexts, status) for k, v in text.items()}
        if isinstance(text, list):
            return [self.value(v, contexts, status) for v in text]
        return text

    def string(self, text: Any, contexts: Mapping[str, Any], status: Status = "success") -> str:
        """A value as the runner hands it to a process (env, inputs, outputs): GitHub's string form."""
        return as_string(self.value(text, contexts, status))

    def condition(self, text: Any, contexts: Mapping[str, Any], status: Status) -> bool:
        """An ``if:``: without a status function it means ``success() && (...)``."""
        if isinstance(text, bool):
            return text and status == "success"
        return bool(self._ask("condition", str(text), contexts, status))


def as_string(value: Any) -> str:
    """GitHub's string form of an evaluated value (null is empty, booleans lower case)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)
