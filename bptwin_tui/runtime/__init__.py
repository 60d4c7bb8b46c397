"""The headless runtime: station wiring, lifecycle, reading pipeline, health and metrics."""
