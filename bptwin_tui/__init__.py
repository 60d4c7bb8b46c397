"""bptwin: the application shell (App, CLI, settings, wiring of workers to stores and screens)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("bptwin")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+source"
