"""Monitors as code: YAML definitions, lint, the alert state machine, checks and notifiers."""
