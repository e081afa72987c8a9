"""Fixtures shared across the suite live in tests/fixtures/ and are loaded here as plugins."""

pytest_plugins = [
    "tests.fixtures.influxd",
    "tests.fixtures.stores",
    "tests.fixtures.browser",
    "tests.fixtures.receiver",
]
