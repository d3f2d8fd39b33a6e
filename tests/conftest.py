"""Shared fixtures. Each area's fixtures live in ``tests/fixtures/<area>.py``.

Every test runs in ``make test``: expensive ones are made cheap (the session's
one vLLM server, cached trained runs, the real pilot's runs, base scores kept by
key), never opt-in.
"""

from __future__ import annotations

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
