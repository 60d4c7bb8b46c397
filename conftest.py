"""Root conftest: registers the real-server fixtures for the whole suite."""

pytest_plugins = [
    "tests.fixtures.postgres",
    "tests.fixtures.mqtt",
    "tests.fixtures.influx",
]
