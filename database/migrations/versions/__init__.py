"""Versioned migration scripts, applied in order by database.migrate.upgrade."""
