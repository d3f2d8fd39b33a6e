"""Order the architecture tests base by base, so that each base's vLLM server boots once.

pytest groups tests by a session fixture's parameter only within one ``parametrize`` list; the
check/smoke tests and the oracle tests take ``served_base`` from different lists, so without this
each server would be booted twice. The cached fixture value is keyed by the parameter's value, so
consecutive tests of one base share one server.
"""

from __future__ import annotations

import pytest

from tests.fixtures.arch import ARCHS

_HERE = "tests/arch/"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    ours = [i for i, item in enumerate(items) if item.nodeid.startswith(_HERE)]
    if not ours:
        return
    order = list(ARCHS)

    def key(item: pytest.Item) -> int:
        callspec = getattr(item, "callspec", None)
        arch = callspec.params.get("served_base") if callspec is not None else None
        return order.index(arch) if arch in order else -1

    block = sorted((items[i] for i in ours), key=key)  # stable: keeps each base's tests in order
    for i, item in zip(ours, block, strict=True):
        items[i] = item
