"""The read-only HTTP API for LIMS and scripts (FastAPI on uvicorn; docs/api.md).

Kept light: ``bptwin.tui.settings`` imports :mod:`bptwin.tui.api.config` for the ``[api]``
section, so nothing here may pull in FastAPI or the notebook.
"""
