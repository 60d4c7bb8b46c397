"""The threat model as tests: one test per threat, against the real servers (docs/security.md)."""
