"""Shared fixtures. Each area's fixtures live in ``tests/fixtures/<area>.py``.

``make test`` runs every test except those marked ``extended``: further full
pipeline runs (train -> check -> smoke -> eval -> sign -> publish) that repeat,
through another entry point, what the default set already proves once. Each
costs several minutes on 2 CPU cores; ``GATE_TEST_EXTENDED=1`` (or
``--extended``) runs them too.
"""

from __future__ import annotations

import os

import pytest

pytest_plugins = [
    "tests.fixtures.base",
    "tests.fixtures.serving",
    "tests.fixtures.training",
    "tests.fixtures.adapters",
    "tests.fixtures.registry",
    "tests.fixtures.service",
    "tests.fixtures.pilot",
    "tests.fixtures.arch",
]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--extended", action="store_true", help="also run the tests marked extended")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--extended") or os.environ.get("GATE_TEST_EXTENDED") == "1":
        return
    skip = pytest.mark.skip(reason="extended full-pipeline test: set GATE_TEST_EXTENDED=1 or pass --extended")
    for item in items:
        if "extended" in item.keywords:
            item.add_marker(skip)
