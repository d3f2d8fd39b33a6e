"""Shared fixtures. Each area's fixtures live in ``tests/fixtures/<area>.py``."""

pytest_plugins = [
    "tests.fixtures.base",
]
