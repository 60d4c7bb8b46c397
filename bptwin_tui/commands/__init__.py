"""Sub-commands of ``bptwin``: each module defines ``register(subparsers)``.

``register`` adds its parser and sets ``func=handler`` with ``handler(args, settings) -> int``.
"""

from __future__ import annotations

COMMANDS: tuple[str, ...] = (
    "run",
    "serve",
    "db",
    "version",
    "simulate",
    "train",
    "validate",
    "audit",
    "doctor",
    "export",
    "accept",
    "export_csv",
    "import_data",
    "api",
    "operator",
    "batch",
    "campaign_report",
)
