"""Escaping of text gate did not write before it reaches a terminal (standard library only).

Kept free of third-party imports so that even the error line of a broken install
(``gate: error: ...`` printed before rich can be imported) is escaped.
"""

from __future__ import annotations

import re

__all__ = ["terminal_safe"]

# C0 controls but newline and tab, DEL, C1 controls (CSI is \x9b), bidi embeddings/overrides/isolates,
# the line/paragraph separators, and lone surrogates (undecodable bytes of a file name).
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff]")


def _escape(m: re.Match[str]) -> str:
    code = ord(m.group())
    if 0xDC80 <= code <= 0xDCFF:  # os.fsdecode's stand-in for an undecodable byte
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def terminal_safe(text: object) -> str:
    """``text`` with every character a terminal would act on shown as an escape (newlines and tabs kept)."""
    return _UNSAFE.sub(_escape, str(text))
