"""Root conftest: registers the real-server fixtures for the whole suite."""

pytest_plugins = [
    "tests.fixtures.postgres",
    "tests.fixtures.mqtt",
    "tests.fixtures.influx",
    "tests.fixtures.notebook",
    # The examples of README.md and docs/*.md (sybil); see tests/docs_examples.py.
    "tests.docs_examples",
]
