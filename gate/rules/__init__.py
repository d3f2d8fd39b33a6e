"""The rules of the packaging-contract gate (``gate check``).

Each rule is a small object with a stable ID (``adapter.rank-above-max``), a
severity, a one-line title, a fix hint and a function that inspects a
:class:`CheckContext` and yields :class:`Hit` objects (message + file). Rules
read headers and small JSON files only; the context reads each input once and
caches it. Rules register themselves with :func:`rule` when their module is
imported; :func:`all_rules` imports them all, in a stable order.

Example::

    from gate.rules import all_rules

    for r in all_rules():
        print(r.id, r.severity, r.title)
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

from gate.rules._context import CheckContext
from gate.vllm_support import lora_support

__all__ = ["CheckContext", "Finding", "Hit", "Rule", "Severity", "all_rules", "lora_support", "rule"]

Severity = Literal["error", "warning"]

#: Rule modules, in the order their findings are reported.
_MODULES = (
    "runtime",
    "files",
    "config",
    "ranks",
    "features",
    "targets",
    "weights",
    "tokenizer",
    "template",
    "base",
)


@dataclass(frozen=True)
class Hit:
    """One thing a rule found: what, and in which file (relative to the adapter directory)."""

    message: str
    path: str
    #: A fix hint naming this input's modules or tokens (else the rule's own hint).
    hint: str | None = None


@dataclass(frozen=True)
class Finding:
    """A rule's hit with the rule's identity attached, as reported."""

    rule: str
    severity: Severity
    message: str
    path: str
    hint: str

    def to_dict(self) -> dict[str, str]:
        """JSON-ready form (keys: rule, severity, message, path, hint)."""
        return {
            "rule": self.rule,
            "severity": self.severity,
            "message": self.message,
            "path": self.path,
            "hint": self.hint,
        }


@dataclass(frozen=True)
class Rule:
    """A named check with a fixed severity and fix hint."""

    id: str
    severity: Severity
    title: str
    hint: str
    func: Callable[[CheckContext], Iterable[Hit]]

    def check(self, ctx: CheckContext) -> list[Finding]:
        """Run the rule and attach its identity to every hit."""
        return [
            Finding(self.id, self.severity, h.message, h.path, h.hint or self.hint) for h in self.func(ctx)
        ]


_RULES: dict[str, Rule] = {}


def rule(
    id: str, severity: Severity, *, title: str, hint: str
) -> Callable[[Callable[[CheckContext], Iterable[Hit]]], Callable[[CheckContext], Iterable[Hit]]]:
    """Register the decorated function as the rule ``id`` (IDs are unique and never reused)."""

    def register(func: Callable[[CheckContext], Iterable[Hit]]) -> Callable[[CheckContext], Iterable[Hit]]:
        if id in _RULES:
            raise ValueError(f"rule {id} is registered twice")
        _RULES[id] = Rule(id=id, severity=severity, title=title, hint=hint, func=func)
        return func

    return register


def all_rules() -> list[Rule]:
    """Every rule, in report order (the modules of ``_MODULES``, each in its own order)."""
    for name in _MODULES:
        importlib.import_module(f"gate.rules.{name}")
    if not _RULES:  # a gate with no rules would pass everything
        raise RuntimeError("no check rules are registered")
    return list(_RULES.values())
