"""Alembic migrations of the relational store (run through database.migrate, no alembic.ini)."""
