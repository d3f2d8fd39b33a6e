"""The regexes of adapter_config.json, evaluated without ever backtracking.

PEFT and vLLM match ``target_modules`` (when it is a string) and the keys of
``rank_pattern`` / ``alpha_pattern`` against every module name with Python's
``re``, a backtracking engine: a pattern of a few hundred bytes can take longer
than the age of the universe on a 40-character module name. gate never runs
these patterns with ``re``. A pattern is first parsed (parsing is linear) and
refused when it is too long or has the shapes that make a backtracking engine
explode (a variable repetition inside another repetition, an alternation under
an unbounded repetition, many unbounded repetitions in a row); such a pattern
is a serving hazard, since the server would run it with ``re``. The rest is
matched with RE2 (PyPI ``google-re2``), whose time is linear in the input.

Example::

    pattern = compile_pattern(r".*\\.(q|v)_proj")
    assert pattern.hazard is None and pattern.fullmatch("model.layers.0.self_attn.q_proj")
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

__all__ = [
    "MAX_PATTERN_CHARS",
    "MAX_PATTERN_KEYS",
    "MAX_REGEX_KEYS",
    "ModulePattern",
    "PatternTable",
    "compile_pattern",
    "pattern_table",
]

#: Longest pattern gate evaluates (real ones are tens of characters).
MAX_PATTERN_CHARS = 1024
#: Keys of rank_pattern / alpha_pattern gate evaluates (one per module of a large MoE fits).
MAX_PATTERN_KEYS = 10_000
#: Of those, keys that are real regexes (not plain dotted names), each matched against every module.
MAX_REGEX_KEYS = 64
#: Unbounded repetitions one pattern may hold (each multiplies the work a backtracking engine can do).
_MAX_UNBOUNDED = 6
_RE2_MEMORY = 8 << 20
_LITERAL = re.compile(r"[\w.\-]+")


@dataclass(frozen=True)
class ModulePattern:
    """A pattern from adapter_config.json: a linear-time matcher, or why there is none."""

    source: str
    #: Python's re cannot compile it (the server refuses the adapter).
    invalid: str | None = None
    #: Why a backtracking engine (the server's) could hang on it; gate does not evaluate it.
    hazard: str | None = None
    _matcher: Any = None

    @property
    def usable(self) -> bool:
        """True when gate can evaluate the pattern."""
        return self._matcher is not None

    def fullmatch(self, text: str) -> bool:
        """The pattern matches all of ``text`` (False when the pattern is not usable)."""
        return self._matcher is not None and self._matcher.fullmatch(text) is not None

    def match(self, text: str) -> bool:
        """The pattern matches a prefix of ``text`` (False when the pattern is not usable)."""
        return self._matcher is not None and self._matcher.match(text) is not None


def _re2_options() -> Any:
    import re2  # type: ignore[import-untyped]  # imported only when an adapter ships a regex (it costs ~50 ms)

    options = re2.Options()
    options.log_errors = False  # RE2 would print its parse errors to stderr
    options.max_mem = _RE2_MEMORY
    return options


@lru_cache(maxsize=256)
def compile_pattern(source: str, *, prefix: str = "", suffix: str = "") -> ModulePattern:
    """Check ``source`` and compile ``prefix + source + suffix`` with RE2 (the affixes are gate's)."""
    if len(source) > MAX_PATTERN_CHARS:
        return ModulePattern(
            source, hazard=f"is {len(source)} characters long (gate allows {MAX_PATTERN_CHARS})"
        )
    try:
        parsed = _parse(source)
    except (re.error, RecursionError, OverflowError) as e:
        return ModulePattern(source, invalid=str(e)[:200])
    hazard = _backtracking_hazard(parsed)
    if hazard:
        return ModulePattern(source, hazard=hazard)
    import re2

    try:
        matcher = re2.compile(prefix + source + suffix, _re2_options())
    except re2.error as e:
        why = e.args[0].decode(errors="replace") if e.args and isinstance(e.args[0], bytes) else str(e)
        return ModulePattern(
            source,
            hazard=f"uses what only a backtracking engine can run ({why[:120]}: backreferences, look-around "
            f"or huge repetition counts)",
        )
    return ModulePattern(source, _matcher=matcher)


def _parse(source: str) -> Any:
    import re._parser as sre_parse  # type: ignore[import-not-found]  # the parser re.compile uses; linear in the pattern

    re.compile(source)  # what the server does first: a pattern it cannot compile is invalid
    return sre_parse.parse(source)


def _backtracking_hazard(parsed: Any) -> str | None:
    import re._parser as sre_parse

    maxrepeat = sre_parse.MAXREPEAT
    unbounded = 0
    # (items, inside a repetition of more than one iteration)
    stack: list[tuple[Iterable[tuple[Any, Any]], bool]] = [(parsed, False)]
    while stack:
        items, inside = stack.pop()
        for op, av in items:
            name = str(op)
            if name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
                low, high, sub = av
                variable = high != low
                if high == maxrepeat:
                    unbounded += 1
                if inside and variable:
                    return "nests a variable repetition inside another repetition (like (a+)+)"
                stack.append((sub, inside or high > 1))
            elif name == "BRANCH":
                if inside:
                    return "repeats an alternation (like (a|ab)*)"
                stack.extend((alt, inside) for alt in av[1])
            elif name in ("SUBPATTERN", "ATOMIC_GROUP"):
                stack.append((av[-1], inside))
            elif name in ("ASSERT", "ASSERT_NOT"):
                stack.append((av[1], inside))
            elif name == "GROUPREF_EXISTS":
                stack.extend((alt, inside) for alt in av[1:] if alt is not None)
    if unbounded > _MAX_UNBOUNDED:
        return f"holds {unbounded} unbounded repetitions (more than {_MAX_UNBOUNDED})"
    return None


@dataclass(frozen=True)
class PatternTable:
    """rank_pattern / alpha_pattern as PEFT reads it: the first key (in file order) matching a module.

    PEFT matches a key with ``re.match(rf"(.*\\.)?({key})$", module)``. Plain dotted names
    (nearly every real key) are looked up by suffix; the few real regexes run on RE2.
    """

    literal: Mapping[str, tuple[int, Any]]
    regex: tuple[tuple[int, ModulePattern, Any], ...]
    #: Keys gate refuses to evaluate (invalid or hazardous), with why.
    refused: tuple[tuple[str, str], ...]

    def value(self, module: str) -> Any:
        """The value of the first key matching ``module`` (None: no key matches)."""
        best: tuple[int, Any] | None = None
        parts = module.split(".")
        for i in range(len(parts)):
            hit = self.literal.get(".".join(parts[i:]))
            if hit is not None and (best is None or hit[0] < best[0]):
                best = hit
        for index, pattern, value in self.regex:
            if best is not None and index > best[0]:
                break
            if pattern.match(module):
                best = (index, value)
                break
        return None if best is None else best[1]


def pattern_table(table: Mapping[str, Any]) -> PatternTable:
    """Build the lookup of a rank_pattern / alpha_pattern mapping (at most :data:`MAX_PATTERN_KEYS`)."""
    literal: dict[str, tuple[int, Any]] = {}
    regex: list[tuple[int, ModulePattern, Any]] = []
    refused: list[tuple[str, str]] = []
    for index, (key, value) in enumerate(table.items()):
        if index >= MAX_PATTERN_KEYS:
            break
        if _LITERAL.fullmatch(key):
            literal.setdefault(key, (index, value))
            continue
        if len(regex) >= MAX_REGEX_KEYS:
            refused.append((key, f"is one regex key too many (gate evaluates {MAX_REGEX_KEYS})"))
            continue
        pattern = compile_pattern(key, prefix=r"(?:.*\.)?(?:", suffix=")$")
        if pattern.usable:
            regex.append((index, pattern, value))
        else:
            refused.append((key, pattern.invalid or pattern.hazard or "cannot be evaluated"))
    return PatternTable(literal, tuple(regex), tuple(refused))
