"""Reliability suite: conservation, idempotency, crash recovery, hostile input, privacy and access."""
