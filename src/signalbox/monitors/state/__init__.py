"""Persisted monitor state: series states, history, silences and acks, between passes and restarts."""
