"""Shared fixtures. Each area's fixtures live in ``tests/fixtures/<area>.py``."""

pytest_plugins = [
    "tests.fixtures.base",
    "tests.fixtures.serving",
    "tests.fixtures.training",
    "tests.fixtures.adapters",
    "tests.fixtures.registry",
    "tests.fixtures.service",
]
