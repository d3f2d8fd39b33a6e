"""A small generic plugin registry with lazy entries and entry-point discovery.

Entries are ``"module:attr"`` strings resolved on first use, so that listing the
trainers (or any other plugin family) never imports a heavy toolkit. Plugins
from other distributions join through an entry-point group.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Iterator
from importlib.metadata import entry_points
from typing import Generic, TypeVar

from gate.errors import InputError

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(Generic[T]):
    """Name -> plugin class, resolved lazily; unknown names get a did-you-mean."""

    def __init__(self, kind: str, base_cls: type[T], *, entry_point_group: str | None = None) -> None:
        self.kind = kind
        self.base_cls = base_cls
        self.entry_point_group = entry_point_group
        self._lazy: dict[str, str] = {}
        self._loaded: dict[str, type[T]] = {}
        self._discovered = False

    def register_lazy(self, name: str, target: str) -> None:
        """Register ``name`` as ``"module:attr"``, imported on first :meth:`get`."""
        if name in self._lazy and self._lazy[name] != target:
            raise ValueError(f"{self.kind} '{name}' is already registered as {self._lazy[name]}")
        self._lazy[name] = target

    def _discover(self) -> None:
        if self._discovered or not self.entry_point_group:
            self._discovered = True
            return
        self._discovered = True
        for ep in entry_points(group=self.entry_point_group):
            # The built-in map wins: an outside package cannot shadow a shipped plugin.
            self._lazy.setdefault(ep.name, ep.value)

    def names(self) -> list[str]:
        """Every registered name, sorted."""
        self._discover()
        return sorted(self._lazy)

    def get(self, name: str) -> type[T]:
        """Resolve ``name`` to its plugin class, importing it if needed."""
        self._discover()
        if name in self._loaded:
            return self._loaded[name]
        target = self._lazy.get(name)
        if target is None:
            close = difflib.get_close_matches(name, self._lazy, n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"known: {', '.join(self.names()) or 'none'}"
            raise InputError(f"unknown {self.kind} '{name}'", hint=hint)
        module_name, _, attr = target.partition(":")
        obj = getattr(importlib.import_module(module_name), attr)
        if not (isinstance(obj, type) and issubclass(obj, self.base_cls)):
            raise InputError(f"{self.kind} '{name}' ({target}) is not a {self.base_cls.__name__}")
        self._loaded[name] = obj
        return obj

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
