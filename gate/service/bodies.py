"""Request bodies parsed without trusting them: JSON bounded in depth, integer size, keys and numbers.

Litestar would hand a JSON body straight to msgspec, which recurses on nesting
(a body of ``[[[[...`` is a 500) and keeps the last of two duplicate keys. Every
JSON body the API accepts goes through :func:`loads_bounded` instead (the
request class below), so a hostile body is one 400 naming what is wrong.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from litestar import Request
from litestar.types import Empty

from gate.errors import InputError

__all__ = ["MAX_DEPTH", "MAX_INT_DIGITS", "BoundedRequest", "loads_bounded"]

#: Deeper than anything the API's bodies need (a pilot matrix is under 10 levels).
MAX_DEPTH = 64
#: Longer integers are refused before Python converts them (quadratic in the digit count).
MAX_INT_DIGITS = 40

# A JSON string: its brackets do not count as nesting.
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(rb"[\[\]{}]")


def _depth(raw: bytes) -> int:
    depth = deepest = 0
    for m in _BRACKETS.finditer(_STRING.sub(b'""', raw)):
        if m.group() in (b"[", b"{"):
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > MAX_DEPTH:
                    return deepest
        else:
            depth -= 1
    return deepest


def _no_duplicates(what: str) -> Any:
    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in pairs:
            if k in out:
                raise InputError(f"{what} has the key {k[:80]!r} twice", hint="each key may appear once")
            out[k] = v
        return out

    return hook


def _int(what: str) -> Any:
    def parse(text: str) -> int:
        if len(text.lstrip("-")) > MAX_INT_DIGITS:
            raise InputError(f"{what} has an integer of {len(text)} digits (at most {MAX_INT_DIGITS})")
        return int(text)

    return parse


def _float(what: str) -> Any:
    def parse(text: str) -> float:
        value = float(text[:400]) if len(text) <= 400 else math.inf
        if not math.isfinite(value):
            raise InputError(f"{what} has a number out of range: {text[:40]}")
        return value

    return parse


def _constant(what: str) -> Any:
    def parse(text: str) -> Any:
        raise InputError(f"{what} has {text}, which is not JSON (numbers must be finite)")

    return parse


def loads_bounded(raw: bytes, *, what: str = "the request body") -> Any:
    """Parse JSON ``raw``; one :class:`InputError` for bad syntax, depth, duplicates or numbers."""
    if _depth(raw) > MAX_DEPTH:
        raise InputError(f"{what} nests JSON deeper than {MAX_DEPTH} levels")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"{what} is not UTF-8: {e}") from None
    try:
        return json.loads(
            text,
            object_pairs_hook=_no_duplicates(what),
            parse_int=_int(what),
            parse_float=_float(what),
            parse_constant=_constant(what),
        )
    except json.JSONDecodeError as e:
        raise InputError(f"{what} is not valid JSON: {e}") from None
    except RecursionError:  # pragma: no cover - the depth scan refuses such bodies first
        raise InputError(f"{what} nests JSON too deeply") from None


class BoundedRequest(Request[Any, Any, Any]):
    """The app's request class: ``json()`` goes through :func:`loads_bounded`."""

    async def json(self) -> Any:
        """The body as bounded JSON (``null`` when empty)."""
        if self._json is Empty:
            self._json = loads_bounded(await self.body() or b"null")
        return self._json
