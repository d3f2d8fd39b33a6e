"""Results of the hot reads on SQLite, kept while the read connection's ``PRAGMA data_version`` stays put.

A status read, a list page and a token lookup are each one statement on the
process's read connection (:mod:`gate.service.reader`); with those in place,
what was left of their cost was SQLite running them (the list of 100: building
87 KB of JSON). Their results depend only on the statement, its parameters and
the database's content, and SQLite says when the content may have changed: the
read connection's ``PRAGMA data_version`` changes whenever any other connection,
in this process or another, commits. The read connection itself never writes
(``query_only``), so an unchanged value means every cached result is still what
the statement would return now. Any change drops the whole cache at once: a
worker's gate result, an approval or a token revocation is seen by the very
next request that checks, in every process.

The cache is bounded in entries and bytes (the oldest entries go first), and an
empty result (an unknown token, a missing release) is never kept, so spraying
guesses cannot grow it or push out what real callers read.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

__all__ = ["ReadCache"]

#: What a cached row list is taken to weigh besides its text (tuples, ints, the key).
_OVERHEAD = 200


def _weight(rows: tuple[tuple[Any, ...], ...]) -> int:
    return _OVERHEAD + sum(len(v) for row in rows for v in row if isinstance(v, str | bytes))


class ReadCache:
    """Row lists by (statement, parameters), valid for one value of ``PRAGMA data_version``."""

    def __init__(self, *, max_entries: int = 4096, max_bytes: int = 64 << 20) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._version: int | None = None
        self._rows: dict[Hashable, tuple[tuple[tuple[Any, ...], ...], int]] = {}
        self._bytes = 0
        #: Counts the times the cache was emptied: a result read before a drop is not kept after it.
        self.generation = 0

    def validate(self, version: int) -> None:
        """Drop everything unless ``version`` is the ``data_version`` the entries were read under."""
        if version != self._version:
            self._rows.clear()
            self._bytes = 0
            self._version = version
            self.generation += 1

    def get(self, key: Hashable) -> tuple[tuple[Any, ...], ...] | None:
        """The rows kept for ``key``, if any."""
        hit = self._rows.get(key)
        return None if hit is None else hit[0]

    def put(self, key: Hashable, rows: tuple[tuple[Any, ...], ...], generation: int) -> None:
        """Keep ``rows`` for ``key`` if they were read in this ``generation`` and are not empty."""
        if not rows or generation != self.generation:
            return
        weight = _weight(rows)
        if weight > self.max_bytes // 4:
            return
        old = self._rows.pop(key, None)
        if old is not None:
            self._bytes -= old[1]
        self._rows[key] = (rows, weight)
        self._bytes += weight
        while len(self._rows) > self.max_entries or self._bytes > self.max_bytes:
            # Dicts keep insertion order: the first key is the oldest entry.
            self._bytes -= self._rows.pop(next(iter(self._rows)))[1]

    def __len__(self) -> int:
        return len(self._rows)
